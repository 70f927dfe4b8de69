"""What the status page, /api/status, /metrics and `tfmirror status` show: one document.

Built from small index documents only (runs/<job>/latest.json and friends, manifests,
state/), never from the run history, so it stays fast with 10,000 run records.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from hub_cache.compat_matrix import Pair, read_matrix
from hub_cache.contracts import served_check
from hub_cache.models import ModelManifest, load_models
from mirror.core.config import Config, HubConfig
from mirror.core.follow_status import SiteFollow, read_follow_status
from mirror.core.followers import Follower, read_followers
from mirror.core.handles import handle_version
from mirror.core.journal import Journal
from mirror.core.live_config import ConfigNote
from mirror.core.quarantine import QuarantineRule, read_quarantine
from mirror.core.runs import (
    BUNDLE_JOB,
    VERIFY_STATE,
    Failure,
    Outcome,
    read_index,
    recent_runs,
    running_since,
)
from mirror.core.snapshots import read_promotion, snapshot_reader, snapshot_readers
from mirror.core.storage import BlobStore
from mirror.pypi.cooldown import Held, read_held
from mirror.pypi.lag import read_lag
from mirror.pypi.manifest import Manifest, load_all
from mirror.pypi.package_licenses import LicenseSummary
from mirror.pypi.upstream_status import read_statuses
from sync_jobs.holdings import difference, holdings, quarantined_holdings
from sync_jobs.scheduler import next_run
from sync_jobs.vulnerabilities import KnownVulnerability, known_vulnerabilities

RECENT_CHANGES = 10  # journal entries on the page
# Jobs whose proof the health rests on: until one has finished once, health is
# "unknown" (not "ok"): nothing has re-hashed the store or installed from it yet.
PROOF_JOBS = ("verify",)


@dataclass(frozen=True)
class LastRun:
    start: str
    end: str
    seconds: float
    trigger: str
    outcome: Outcome
    counts: dict[str, int]
    bytes: int
    bundle: str | None = None  # the bundle a bundle run exported or imported


@dataclass(frozen=True)
class Totals:
    runs: int = 0
    failed: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class JobStatus:
    job: str
    schedule: str  # cron, or "not scheduled"
    next_run: str | None
    last_run: LastRun | None
    last_success: str | None
    last_error: Failure | None  # the first error of a failed last run
    error_count: int
    totals: Totals
    running_since: str | None = None  # a run in progress, wherever it runs
    recent: list[dict[str, Any]] | None = None  # the last runs: start, seconds, bytes, ok

    @property
    def can_run(self) -> bool:
        """The page's button can start it: bundles need a folder, given by hand."""
        return self.job != BUNDLE_JOB

    @property
    def failing(self) -> bool:
        # An interrupted run (a stop) is no failure: the last success still stands.
        return self.last_run is not None and self.last_run.outcome is Outcome.FAILED


@dataclass(frozen=True)
class TargetInventory:
    target: str
    projects: int
    files: int
    bytes: int
    synced_at: str
    last_sync: str  # the last PyPI sync's word on it: committed, unchanged, failed or ""


@dataclass(frozen=True)
class EnvironmentInventory:
    """One environment: its own index, what it asks for, each target's closure."""

    name: str
    index_url: str
    requirements: list[str]
    constraints: list[str]
    targets: list[TargetInventory]
    configured: bool  # False: only its manifests are here (a bundle brought them)


@dataclass(frozen=True)
class ModelInventory:
    handle: str
    path: str
    size: int
    sha256: str
    synced_at: str
    # Against its pinned contract, when its entry pins one (hub_cache.contracts):
    # "matches", "compatible", "breaking" (published under report) or "not read".
    contract: str = ""
    contract_changes: tuple[str, ...] = ()
    # The form it is served in (hub_cache.formats: "SavedModel", "TFLite", ...) and the
    # version its handle names (a Kaggle or tfhub.dev handle ends in one), else "".
    format: str = ""
    version: str = ""
    # Who signed the version served, when its entry requires a signature
    # (hub_cache.signatures): the key's fingerprint, the certificate's subject or the
    # Sigstore identity; "" when none is required.
    signer: str = ""
    # Its licence as read at sync: SPDX id, else the name upstream gave, else "unknown".
    license: str = "unknown"


@dataclass(frozen=True)
class Inventory:
    environments: list[EnvironmentInventory]
    models: list[ModelInventory]
    pypi_bytes: int
    hub_bytes: int


@dataclass(frozen=True)
class BuiltWheel:
    """A wheel the mirror built from an sdist in its sandbox, and where it is used."""

    filename: str
    sdist: str
    sdist_sha256: str
    python: str
    requires: list[str]
    built_at: str
    tools: str
    used_by: list[str]  # environment/target


@dataclass(frozen=True)
class LagRow:
    """One environment's requirement: what that environment mirrors of it against the
    newest its pin, its constraints and its targets' Pythons allow."""

    environment: str
    requirement: str
    project: str
    mirrored: list[str]
    newest_upstream: str | None  # the newest the pin and the targets' Pythons allow
    behind: bool
    newest_release: str | None = None  # the newest of all, where that is another

    @property
    def known(self) -> bool:
        return bool(self.newest_upstream and self.mirrored)


@dataclass(frozen=True)
class SnapshotRow:
    name: str
    created: str
    actor: str
    note: str
    blobs: int
    quarantined: list[str]  # what it holds that quarantine keeps from every node


@dataclass(frozen=True)
class FleetOn:
    """What the fleet's default index and hub paths serve: a promoted snapshot (and
    what the live mirror has beyond it), or the live mirror (snapshot "")."""

    snapshot: str = ""
    at: str = ""
    actor: str = ""
    note: str = ""
    live_beyond: dict[str, list[str]] = field(default_factory=dict)
    missing: bool = False  # promoted, but no such snapshot: the fleet gets 503s


def _fleet_on(store: BlobStore) -> tuple[FleetOn, list[SnapshotRow]]:
    quarantine = read_quarantine(store)
    rows = [
        SnapshotRow(
            r.snapshot.name,
            r.snapshot.created,
            r.snapshot.actor,
            r.snapshot.note,
            len(r.blobs),
            quarantined_holdings(r, quarantine),
        )
        for r in snapshot_readers(store)
    ]
    promotion = read_promotion(store)
    if not promotion.snapshot:
        return FleetOn(), rows
    reader = snapshot_reader(store, promotion.snapshot)
    on = FleetOn(promotion.snapshot, promotion.at, promotion.actor, promotion.note)
    if reader is None:
        return replace(on, missing=True), rows
    beyond = difference(holdings(reader), holdings(store)).as_json()
    return replace(on, live_beyond=beyond), rows


def _model_inventory(store: BlobStore, model: ModelManifest, hub: HubConfig) -> ModelInventory:
    check = served_check(store, model, hub)
    return ModelInventory(
        model.handle,
        model.path,
        model.size,
        model.sha256,
        model.synced_at,
        check.state if check else "",
        tuple(c.shown() for c in check.changes) if check else (),
        model.model_format.name if model.model_format is not None else "",
        handle_version(model.path),
        signer=model.signer.get("signer", ""),
        license=model.model_license.shown(),
    )


def _model_fit(store: BlobStore, models: list[ModelInventory]) -> list[Pair]:
    """The matrix rows of the archives served now (a replaced model's old rows are stale)."""
    current = {(m.handle, m.sha256) for m in models}
    return sorted(
        (p for p in read_matrix(store) if (p.model, p.sha256) in current),
        key=lambda p: (p.model, p.environment),
    )


@dataclass(frozen=True)
class Status:
    """The one document behind the page, /api/status, /metrics and `tfmirror status`."""

    generated_at: str
    healthy: bool  # health == "ok": a job failing, or a proof never finished, is not
    health: str  # "ok", "failing" (failing_jobs, a missing snapshot) or "unknown"
    failing_jobs: list[str]
    unknown_jobs: list[str]  # scheduled proof jobs that have never finished a run
    jobs: list[JobStatus]
    inventory: Inventory
    lag: list[LagRow]
    built: list[BuiltWheel]
    held_back: list[Held]  # releases the cooldown kept out at the last resolve
    recent_changes: list[dict[str, Any]]  # the journal's newest entries
    quarantine: list[QuarantineRule]  # what the mirror holds and must not offer
    promoted: FleetOn  # what the fleet is on
    model_fit: list[Pair]  # which model loads in which environment, as last checked
    snapshots: list[SnapshotRow]
    project_status: dict[str, dict[str, str]]  # upstream's PEP 792 archived/deprecated
    verification: dict[str, Any] | None  # the last verify's report, as verify wrote it
    store: str
    devpi_index: str
    # Where a process that reloads its config serves the page (`up`): the last reload,
    # a refused config's one-line error, what changed that needs a restart.
    config: ConfigNote | None = None
    # By environment: what the advisory database says of its closure (empty: none synced).
    advisories: dict[str, list[KnownVulnerability]] = field(default_factory=dict)
    follow: SiteFollow | None = None  # a site: its centre, lag, and an outage's one line
    followers: list[Follower] = field(default_factory=list)  # a centre: who follows it
    # Per environment: files per licence and those outside its policy (live closures).
    licenses: list[LicenseSummary] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _job(config: Config, store: BlobStore, job: str, cron: str) -> JobStatus:
    latest = read_index(store, job, "latest.json")
    success = read_index(store, job, "last-success.json")
    totals = read_index(store, job, "totals.json") or {}
    upcoming = next_run(cron) if cron else None
    last = None
    if latest is not None:
        last = LastRun(
            start=latest["start"],
            end=latest["end"],
            seconds=latest["seconds"],
            trigger=latest["trigger"],
            outcome=Outcome(latest["outcome"]),
            counts=latest.get("counts", {}),
            bytes=latest.get("bytes", 0),
            bundle=latest.get("bundle"),
        )
    errors = latest.get("errors", []) if latest and last and last.outcome is not Outcome.OK else []
    return JobStatus(
        job=job,
        schedule=cron or "not scheduled",
        next_run=upcoming.isoformat() if upcoming else None,
        last_run=last,
        last_success=success["end"] if success else None,
        last_error=Failure.from_json(errors[0]) if errors else None,
        error_count=len(errors),
        totals=Totals(**{k: int(totals.get(k, 0)) for k in ("runs", "failed", "bytes")}),
        running_since=running_since(store, job),
        recent=recent_runs(store, job),
    )


def _lag(config: Config, manifests: list[Manifest], store: BlobStore) -> list[LagRow]:
    lag = read_lag(store)
    # The previous release's record ("newest" per project, whatever each environment
    # pins) has no "environments": every row reads as not known until the next sync.
    newest: dict[str, dict[str, str]] = dict(lag.get("environments", {}))  # type: ignore[call-overload]
    release: dict[str, str] = dict(lag.get("newest_release", {}))  # type: ignore[call-overload]
    rows = []
    for env in config.pypi.environments:
        mirrored: dict[str, set[str]] = {}
        for manifest in manifests:
            if manifest.environment == env.name:
                for wheel in manifest.files:
                    mirrored.setdefault(wheel.project, set()).add(wheel.version)
        for requirement in env.requirements:
            name = canonicalize_name(Requirement(requirement).name)
            have = sorted(mirrored.get(name, set()), key=_version_key)
            latest = newest.get(env.name, {}).get(requirement, "")
            behind = bool(latest and (not have or _version_key(have[-1]) < _version_key(latest)))
            other = release.get(name) or None
            other = other if other != latest else None
            rows.append(LagRow(env.name, requirement, name, have, latest or None, behind, other))
    return rows


def _version_key(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


def _environments(
    config: Config, manifests: list[Manifest], base_url: str, last_sync: dict[str, Any]
) -> list[EnvironmentInventory]:
    """Every configured environment (with its targets, synced or not), then any other
    one the store holds manifests of."""
    by_env: dict[str, dict[str, Manifest]] = {}
    for manifest in manifests:
        by_env.setdefault(manifest.environment, {})[manifest.target.id] = manifest
    outcomes = last_sync.get("environments", {}) if isinstance(last_sync, dict) else {}

    def target_row(env: str, target_id: str) -> TargetInventory:
        found = by_env.get(env, {}).get(target_id)
        files = found.files if found else []
        return TargetInventory(
            target=target_id,
            projects=len({w.project for w in files}),
            files=len(files),
            bytes=sum(w.size or 0 for w in files),
            synced_at=found.synced_at if found else "",
            last_sync=str(outcomes.get(env, {}).get(target_id, "")),
        )

    rows = []
    for env in config.pypi.environments:
        ids = [t.id for t in env.targets]
        ids += sorted(set(by_env.get(env.name, {})) - set(ids))
        rows.append(
            EnvironmentInventory(
                env.name,
                f"{base_url}/{config.devpi.user}/{env.name}/+simple/",
                list(env.requirements),
                list(env.constraints),
                [target_row(env.name, t) for t in ids],
                configured=True,
            )
        )
    for name in sorted(set(by_env) - {env.name for env in config.pypi.environments}):
        any_manifest = next(iter(by_env[name].values()))
        rows.append(
            EnvironmentInventory(
                name,
                f"{base_url}/{config.devpi.user}/{name}/+simple/",
                list(any_manifest.requirements),
                list(any_manifest.constraints),
                [target_row(name, t) for t in sorted(by_env[name])],
                configured=False,
            )
        )
    return rows


def _built(manifests: list[Manifest]) -> list[BuiltWheel]:
    rows: dict[str, BuiltWheel] = {}
    for manifest in manifests:
        for wheel in manifest.files:
            if (built := wheel.built_from) is None:
                continue
            row = rows.setdefault(
                wheel.sha256,
                BuiltWheel(
                    wheel.filename,
                    built.sdist,
                    built.sdist_sha256,
                    built.python,
                    list(built.requires),
                    built.built_at,
                    built.tools,
                    [],
                ),
            )
            row.used_by.append(manifest.where)
    return sorted(rows.values(), key=lambda r: r.filename)


def collect_status(
    config: Config, store: BlobStore, base_url: str, config_note: ConfigNote | None = None
) -> Status:
    """`base_url`: where the fleet reaches the mirror; its indexes are under it (what
    `tfmirror pip-conf` prints)."""
    jobs = [_job(config, store, job, cron) for job, cron in config.jobs]
    if read_index(store, BUNDLE_JOB, "latest.json") is not None:
        jobs.append(_job(config, store, BUNDLE_JOB, ""))  # only where bundles are made or read
    manifests = load_all(store)
    last_sync = read_index(store, "pypi", "latest.json") or {}
    environments = _environments(config, manifests, base_url, last_sync)
    models = [_model_inventory(store, m, config.hub) for m in load_models(store)]
    verify_raw = store.get(VERIFY_STATE)
    failing = [j.job for j in jobs if j.failing]
    unknown = [
        j.job for j in jobs if j.job in PROOF_JOBS and j.last_run is None and j.next_run is not None
    ]
    promoted, snapshots = _fleet_on(store)
    health = "failing" if failing or promoted.missing else "unknown" if unknown else "ok"
    return Status(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        healthy=health == "ok",
        health=health,
        failing_jobs=failing,
        unknown_jobs=unknown,
        jobs=jobs,
        inventory=Inventory(
            environments=environments,
            models=models,
            pypi_bytes=sum({w.sha256: w.size or 0 for m in manifests for w in m.files}.values()),
            hub_bytes=sum(m.size for m in models),
        ),
        lag=_lag(config, manifests, store),
        built=_built(manifests),
        held_back=read_held(store),
        recent_changes=Journal(store).recent(RECENT_CHANGES),
        quarantine=list(read_quarantine(store).rules),
        promoted=promoted,
        snapshots=snapshots,
        model_fit=_model_fit(store, models),
        project_status=read_statuses(store),
        verification=json.loads(verify_raw) if verify_raw else None,
        store=store.describe(),
        devpi_index=f"{base_url}/{config.devpi.index}/+simple/",
        config=config_note,
        advisories=known_vulnerabilities(config, store, manifests),
        licenses=_licenses(config, manifests),
        **_following(config, store),
    )


def _following(config: Config, store: BlobStore) -> dict[str, Any]:
    now = datetime.now(UTC)
    site = read_follow_status(store) if config.follow is not None else None
    if config.follow is not None and (site is None or site.url != config.follow.url):
        site = SiteFollow(config.follow.url)  # not pulled from this centre yet
    return {"follow": site.at(now) if site else None, "followers": read_followers(store, now)}


def _licenses(config: Config, manifests: list[Manifest]) -> list[LicenseSummary]:
    by_env: dict[str, list[Manifest]] = {}
    for manifest in manifests:
        by_env.setdefault(manifest.environment, []).append(manifest)
    return [
        LicenseSummary.of(env, (w for m in ms for w in m.files), config.pypi.license_policy(env))
        for env, ms in sorted(by_env.items())
    ]
