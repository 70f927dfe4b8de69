"""The PyPI sync, as its steps: read what is committed, resolve each environment's
closure for each of its targets (building what has no wheel: mirror.pypi.closure_resolver),
download what is new (mirror.pypi.download), check (upstream's facts on each file, then
every closure check: mirror.pypi.closure_checks), commit, publish to devpi. A file two
closures share is fetched once; a closure is committed only when every file of it is
verified and stored and no check refuses it, or it keeps its previous commit. devpi is
brought in line after the commit, from the store, so it can always be rebuilt from it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from mirror.advisories.policy import Screen
from mirror.core.config import Config, Environment, PypiConfig, Target
from mirror.core.credentials import Credentials
from mirror.core.errors import LeaseLost, ServiceError, StoreError
from mirror.core.hosts import HostPolicy
from mirror.core.journal import Journal, actor_for
from mirror.core.lease import fence
from mirror.core.quarantine import Quarantine, read_quarantine
from mirror.core.redact import redact_url
from mirror.core.runs import Failure, RunRecord, utcnow
from mirror.core.sandbox import SandboxLimits
from mirror.core.sizes import human_bytes
from mirror.core.storage import BlobStore
from mirror.core.upstream import FetchPolicy, ProjectPages
from mirror.pypi.advisory_avoidance import Advisories
from mirror.pypi.avoidance import Refused, Source, avoid, refused_by
from mirror.pypi.build_backends import resolve_backends
from mirror.pypi.build_sandbox import BuildPolicy
from mirror.pypi.changes import closure_changes
from mirror.pypi.closure_checks import CLOSURE_CHECKS, ClosureCheck, SyncView, Verdict
from mirror.pypi.closure_resolver import ClosureResolver
from mirror.pypi.cooldown import Cooldown, Held, earliest, explain, save_held
from mirror.pypi.download import Progress as Progress  # the CLI's bar plugs in here
from mirror.pypi.download import download
from mirror.pypi.errors import ResolveError
from mirror.pypi.file_facts import read_digests, read_pages, settle_all
from mirror.pypi.fingerprint import (
    Fingerprint,
    inputs_digest,
    load_fingerprint,
    load_validators,
    pages_digest,
    save_fingerprint,
    save_validators,
    still_current,
)
from mirror.pypi.lag import record_lag
from mirror.pypi.licence_avoidance import Licences
from mirror.pypi.manifest import (
    Manifest,
    delete_manifest,
    load_all,
    migrate_layout,
    save_manifest_over,
)
from mirror.pypi.module_gaps import gaps
from mirror.pypi.resolve import Role, Wheel
from mirror.pypi.speculate import Closure, SpeculativePrefetch
from mirror.pypi.stored_urls import scrub_credentials

log = logging.getLogger("tfmirror.pypi")
JOB = "pypi"  # the lease every commit and every write of shared state is fenced by


class Published(Protocol):
    count: int  # files the index was shown to hold, newly
    failures: list[Failure]
    offered_after: float  # seconds into publishing when the index offered every file


def _as_set(wheels: list[Wheel]) -> set[str]:
    return {json.dumps(w.as_json(), sort_keys=True) for w in wheels}


def fetch_policy(pypi: PypiConfig) -> FetchPolicy:
    """How wheels are fetched: sizes come from the index; a redirect may reach an internal
    host only if it is the configured upstream's or listed in [pypi] allow_hosts."""
    return FetchPolicy(
        timeout=pypi.timeout,
        retries=pypi.retries,
        deadline=pypi.deadline,
        hosts=HostPolicy.trusting([pypi.upstream, *pypi.allow_hosts], "[pypi] allow_hosts"),
        credentials=Credentials.of([pypi.upstream]),
    )


class PackageIndex(Protocol):
    """Where the fleet installs from (devpi, on the devpi side): set up while the sync
    resolves and downloads, then made to offer exactly the committed manifests' files."""

    @property
    def url(self) -> str: ...

    def prepare(self) -> None: ...

    def publish(self, files: Mapping[str, Wheel], changed: bool) -> Published: ...


@dataclass
class SyncReport:
    new: int = 0
    skipped: int = 0
    bytes: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    committed: list[str] = field(default_factory=list)  # environment/target of each
    dropped: list[str] = field(default_factory=list)  # no longer configured: unpublished
    built: int = 0  # wheels built from sdists in the sandbox
    notes: list[str] = field(default_factory=list)  # not failures: a build backend left out
    devpi_warmed: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        built = f", {self.built} built from sdists" if self.built else ""
        return (
            f"pypi sync: {self.new} new, {self.skipped} skipped, {len(self.failures)} failed"
            f"{built}, {human_bytes(self.bytes)}, {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class Slot:
    """One environment's closure for one of its targets: what one manifest holds."""

    environment: Environment
    target: Target

    @property
    def id(self) -> str:
        """`environment/target`: the name a run record and the status page give it."""
        return f"{self.environment.name}/{self.target.id}"


def slots(pypi: PypiConfig) -> list[Slot]:
    return [Slot(env, target) for env in pypi.environments for target in env.targets]


@dataclass
class _Plan:
    wheels: dict[str, list[Wheel]]  # per slot (environment/target)
    slots: dict[str, Slot]
    to_fetch: dict[str, Wheel]  # by sha256
    # What the committed manifests held when the sync began: read once, for skipping
    # known files and for the facts already settled for them.
    committed: dict[str, Manifest] = field(default_factory=dict)
    # Per slot, what its closure is resolved from (mirror.pypi.fingerprint); only for
    # slots the resolver ran for: a reused closure keeps the fingerprint it has.
    inputs: dict[str, str] = field(default_factory=dict)
    held: list[Held] = field(default_factory=list)  # what the cooldown kept out
    changes: list[dict[str, Any]] = field(default_factory=list)  # for the journal
    quarantine: Quarantine = field(default_factory=Quarantine)  # as the sync began
    screen: Screen | None = None  # the advisory database and policies; None: none synced

    @property
    def known(self) -> dict[str, Wheel]:
        return {w.sha256: w for m in self.committed.values() for w in m.files}


@dataclass
class _Run:
    """One run's state, handed from step to step."""

    record: RunRecord
    report: SyncReport
    began: float  # time.monotonic() at its start
    pages: ProjectPages  # upstream's pages, each read once this run
    validators: dict[str, tuple[str, str]]  # the pages' validators as the run began
    side: ThreadPoolExecutor  # work off the critical path
    index_ready: Future[None] | None  # devpi's user and index, set up meanwhile
    checks: list[ClosureCheck] = field(default_factory=list)  # made for this run
    plan: _Plan = field(default_factory=lambda: _Plan({}, {}, {}))


class PypiSync:
    def __init__(
        self,
        config: Config,
        store: BlobStore,
        index: PackageIndex | None,
        progress: Progress | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.index = index
        self.progress = progress or Progress()
        self.policy = fetch_policy(config.pypi)
        # The wall clock the cooldown cuts by and a waiver's last day is judged by
        # (a test moves it); durations are time.monotonic()'s.
        self.clock = clock
        self._began = clock()
        self._trigger = "manual"

    def _cooldown(self, env: Environment) -> Cooldown:
        return Cooldown(env.min_age, self._began, self.config.pypi.cooldown_exempt)

    def run(self, trigger: str = "manual") -> SyncReport:
        """One sync, as its steps. A file that fails fails alone: its closures keep
        their last commit, and every other step goes on."""
        self._began = self.clock()  # every resolve and guess cuts the cooldown here
        self._trigger = trigger
        with ThreadPoolExecutor(3, thread_name_prefix="side") as side:
            run = self._begin(trigger, side)
            self._read_committed(run)
            with self._prefetching(run) as prefetch:  # the likeliest wheels, from the start
                self._resolve(run, prefetch)  # builds what has no wheel
                entries = self._download(run, prefetch)
            run.record.phase = "commit"
            self._check(run, entries.result())
            self._commit(run)
            self._publish(run)
        self._finish(run)
        return run.report

    def _begin(self, trigger: str, side: ThreadPoolExecutor) -> _Run:
        record = RunRecord.begin("pypi", trigger)
        began = time.monotonic()
        # devpi's user and index are set up while the closure resolves and downloads
        # (on a fresh devpi that is 0.3 s of password hashing).
        index_ready = side.submit(self.index.prepare) if self.index is not None else None
        validators = load_validators(self.store)
        pypi = self.config.pypi
        pages = ProjectPages(pypi.upstream, pypi.timeout, self.policy, validators)
        return _Run(record, SyncReport(), began, pages, validators, side, index_ready)

    @contextlib.contextmanager
    def _prefetching(self, run: _Run) -> Iterator[SpeculativePrefetch]:
        """Each top-level requirement's likeliest wheel, fetched while uv resolves;
        what the resolve did not confirm is stopped when the block ends."""
        guesses = [
            Closure(
                s.environment.requirements,
                s.environment.constraints,
                s.target,
                self._cooldown(s.environment),
                _blocked_in(run.plan.screen, s.environment.name),
            )
            for s in slots(self.config.pypi)
        ]
        prefetch = SpeculativePrefetch(self.store, guesses, run.pages, self.policy)
        try:
            yield prefetch
        finally:
            prefetch.close(wanted={w.sha256 for ws in run.plan.wheels.values() for w in ws})

    # -- 0. what is committed ---------------------------------------------------------
    def _read_committed(self, run: _Run) -> None:
        moved = migrate_layout(self.store)  # under the pypi lease, like every commit
        if moved:
            run.report.timings["migrated_manifests"] = float(len(moved))
        scrubbed = scrub_credentials(self.store)  # those a bundle brought, written before
        if scrubbed:
            run.report.timings["scrubbed_documents"] = float(len(scrubbed))
        run.plan.committed = {m.where: m for m in load_all(self.store)}
        run.plan.quarantine = read_quarantine(self.store)
        run.plan.screen = Screen.load(self.store, self.config, self._began)
        # The pages of what is mirrored already are read while the closure resolves:
        # most will be asked for again (TFX's 264 took 6 s after its resolve, 8 at once).
        run.side.submit(read_digests, run.pages, {w.project for w in run.plan.known.values()})

    # -- 1. resolve ------------------------------------------------------------------
    def _resolve(self, run: _Run, prefetch: SpeculativePrefetch) -> None:
        run.record.phase = "resolve"  # what a stop's record names
        plan, report, pages = run.plan, run.report, run.pages
        t0 = time.monotonic()
        pypi = self.config.pypi
        known = plan.known
        have = {(w.filename, w.sha256) for w in known.values()}
        caps = SandboxLimits(pypi.build_timeout, pypi.build_memory_mb, pypi.build_processes)
        builds = ClosureResolver(
            self.store,
            pages,
            self.policy,
            BuildPolicy(pypi.sdists == "build", caps),
            known,
            self._cooldown,
            plan.quarantine,
        )
        try:
            for slot in slots(pypi):
                self._resolve_slot(slot, builds, plan, report, prefetch, have, pages)
            plan.held = builds.held()
        finally:
            builds.close()
        # A resolver ran: what it was not given is news for the page.
        if plan.inputs and self._still_leader(report):
            save_held(self.store, plan.held, utcnow())
        report.built = builds.builds
        report.timings["resolve"] = time.monotonic() - t0

    def _resolve_slot(
        self,
        slot: Slot,
        builds: ClosureResolver,
        plan: _Plan,
        report: SyncReport,
        prefetch: SpeculativePrefetch,
        have: set[tuple[str, str]],
        pages: ProjectPages,
    ) -> None:
        pypi = self.config.pypi
        env, target = slot.environment, slot.target
        advised = plan.screen.digest(env.name) if plan.screen is not None else None
        inputs = inputs_digest(env, target, pypi, advised)
        old = plan.committed.get(slot.id)
        known = load_fingerprint(self.store, env.name, target.id)
        sources = _sources(plan.screen, pypi, builds)
        if (
            old is not None
            and still_current(known, inputs, pages, {w.project for w in old.files})
            and not refused_by(sources, env, old.files)  # a new advisory: resolve
        ):
            log.info("%s: inputs and upstream pages unchanged; closure kept", slot.id)
            wheels = list(old.files)
        else:
            try:
                wheels = builds.resolve(env, target)
                # around what the environment's policy keeps out
                avoided = avoid(sources, env, wheels, pages, lambda e: builds.resolve(e, target))
                wheels, env = avoided.wheels, avoided.environment
                plan.changes += _left_out(slot, old, avoided.left_out)
                report.notes += [
                    f"{slot.id}: resolved around {r.named()}"
                    for r in {r.named(): r for r in avoided.left_out}.values()
                ]
            except ResolveError as exc:
                # A pin only a too-young release meets says when it will be taken.
                why = explain(str(exc), builds.held())
                report.failures.append(Failure(slot.id, "", why))
                return
            resolver = partial(builds.resolve_wheels, cooldown=builds.cooldown(env))
            backends = resolve_backends(pypi.build_backends, env, target, resolver, wheels)
            wheels = [*wheels, *backends.files]
            report.notes += [f"{slot.id}: build backend {why}" for why in backends.missing]
            plan.inputs[slot.id] = inputs
        plan.wheels[slot.id] = wheels
        plan.slots[slot.id] = slot
        closure = [(w.project, w.version) for w in wheels if w.role == Role.CLOSURE]
        report.notes += [f"{slot.id}: {gap}" for gap in gaps(env.name, closure)]
        for wheel in wheels:
            if wheel.sha256 in plan.to_fetch:
                continue
            if prefetch.fetch_for(wheel.sha256) is not None:
                plan.to_fetch[wheel.sha256] = wheel  # new, and already on its way
            elif (wheel.filename, wheel.sha256) in have or self.store.touch_blob(wheel.sha256):
                # A blob no manifest lists is re-stamped before it is reused: gc
                # spares blobs younger than its grace period until this commits.
                report.skipped += 1
            else:
                plan.to_fetch[wheel.sha256] = wheel

    # -- 2. download and verify --------------------------------------------------------
    def _download(
        self, run: _Run, prefetch: SpeculativePrefetch
    ) -> Future[dict[str, dict[str, Any]]]:
        """What is new, verified into the store; returns upstream's entry for each file
        of the closures (upload time, yanked), read while they download."""
        plan, report = run.plan, run.report
        projects = {w.project for ws in plan.wheels.values() for w in ws}
        entries = run.side.submit(read_pages, run.pages, projects)
        run.record.phase = "download"
        t0 = time.monotonic()
        workers = self.config.pypi.workers
        done = download(
            self.store, list(plan.to_fetch.values()), prefetch, self.policy, workers, self.progress
        )
        report.new += done.new
        report.bytes += done.bytes
        report.failures += done.failures
        report.timings["download_verify_store"] = time.monotonic() - t0
        return entries

    # -- 3. check: what the index says besides the bytes, and every closure check ------
    def _check(self, run: _Run, entries: Mapping[str, Mapping[str, Any]]) -> None:
        self._settle(run.plan, run.report, entries)
        plan = run.plan
        view = SyncView(
            self.store,
            run.pages,
            [*plan.known.values(), *(w for ws in plan.wheels.values() for w in ws)],
            actor_for(self._trigger),
            partial(self._still_leader, run.report),
            plan.screen,
        )
        run.checks = [make(self.config.pypi) for make in CLOSURE_CHECKS]
        for check in run.checks:
            plan.changes += check.prepare(view)

    def _settle(
        self, plan: _Plan, report: SyncReport, entries: Mapping[str, Mapping[str, Any]]
    ) -> None:
        t0 = time.monotonic()
        failed = {f.name for f in report.failures}
        wanted = [w for ws in plan.wheels.values() for w in ws if w.filename not in failed]
        settled, failures = settle_all(self.store, wanted, entries, plan.known)
        report.failures.extend(failures)
        for target_id, wheels in plan.wheels.items():
            plan.wheels[target_id] = [settled.get(w.sha256, w) for w in wheels]
        report.timings["settle"] = time.monotonic() - t0

    # -- 4. commit -------------------------------------------------------------------
    def _commit(self, run: _Run) -> None:
        try:
            failed = {f.name for f in run.report.failures}
            for where, wheels in run.plan.wheels.items():
                if self._may_commit(run, where, wheels, failed):
                    self._commit_slot(run, where, wheels)
            self._drop_unconfigured(run)
        except LeaseLost as exc:
            self._lease_lost(run.report, exc)
        finally:
            # What the fleet is now offered, and who changed it (one entry per sync).
            changes = run.plan.changes
            Journal(self.store).record(changes, actor_for(self._trigger), "pypi sync")

    def _may_commit(self, run: _Run, where: str, wheels: list[Wheel], failed: set[str]) -> bool:
        """The closure verified whole and no check refuses or holds it back; if not, the
        report says why (the last closure stays)."""
        report = run.report
        if any(w.filename in failed for w in wheels):
            report.failures.append(
                Failure(
                    where,
                    "",
                    "not committed: its closure has failed files; "
                    "the previous closure stays published",
                )
            )
            return False
        findings = [f for check in run.checks for f in check.review(where, wheels)]
        refused = [f.reason for f in findings if f.verdict is Verdict.REFUSE]
        if refused:
            # Not resolved around: the operator (or upstream) pulled what it needs.
            why = f"its closure needs {'; '.join(refused)}; the last closure stays, without it"
            report.failures.append(Failure(where, "", why))
            return False
        held = [f.reason for f in findings if f.verdict is Verdict.HOLD]
        if held:
            report.notes.append(f"{where}: held back, the last closure stays: {'; '.join(held)}")
            return False
        return True

    def _commit_slot(self, run: _Run, where: str, wheels: list[Wheel]) -> None:
        plan = run.plan
        slot = plan.slots[where]
        env = slot.environment
        old = plan.committed.get(where)
        same = (
            old is not None
            and old.requirements == env.requirements
            and old.constraints == env.constraints
            # A fact that changed upstream (a yank) is a change: the pages show it.
            and _as_set(old.files) == _as_set(wheels)
        )
        if not same:
            fence(JOB)  # a replica that took the lease over commits instead
            manifest = Manifest(
                slot.target, env.requirements, wheels, utcnow(), env.name, env.constraints
            )
            if not save_manifest_over(self.store, manifest, old):
                reason = (
                    "another writer committed it since this run read it (a replica "
                    "that took the lease over); its manifest stands"
                )
                run.report.failures.append(Failure(where, "", reason))
                return
            run.report.committed.append(where)
            plan.changes += closure_changes(old, manifest, where)
        self._remember(plan, where, run.pages)

    def _drop_unconfigured(self, run: _Run) -> None:
        """An environment or target taken out of the config leaves every index: its
        wheels are gc's once no other manifest lists them."""
        configured = {slot.id for slot in slots(self.config.pypi)}
        for where, manifest in run.plan.committed.items():
            if where not in configured:
                fence(JOB)
                delete_manifest(self.store, manifest)
                run.report.dropped.append(where)
                run.plan.changes += closure_changes(manifest, None, where)

    def _remember(self, plan: _Plan, where: str, pages: ProjectPages) -> None:
        """What a freshly resolved (and committed) closure came from, for the next sync.
        Its pages were read after the resolver read them: one that changed in between
        is seen at the next full resolve (mirror.pypi.fingerprint)."""
        inputs = plan.inputs.get(where)
        if inputs is None:
            return  # reused: its fingerprint stands
        slot = plan.slots[where]
        digest = pages_digest(pages, {w.project for w in plan.wheels[where]})
        if digest is not None:
            fence(JOB)  # the next sync's shortcut: the current leader's to decide
            fp = Fingerprint(inputs, digest, time.time(), earliest(plan.held))
            save_fingerprint(self.store, slot.environment.name, slot.target.id, fp)

    # -- 5. publish, and the record ---------------------------------------------------
    def _publish(self, run: _Run) -> None:
        """devpi made to offer the committed closures; upstream's newest versions noted
        for the status page, off the critical path."""
        report = run.report
        # From here the fleet installs the closure through nginx (the store's blobs
        # for what devpi does not hold yet): devpi's pull below is off its path.
        report.timings["committed_at"] = time.monotonic() - run.began
        pypi = self.config.pypi
        lag = run.side.submit(record_lag, self.store, run.pages, pypi.environments)
        if run.index_ready is not None:
            run.record.phase = "devpi pull (after the commit)"
            self._push_devpi(report, run.began, run.index_ready)
        try:
            lag.result()
        except StoreError as exc:
            report.failures.append(Failure("lag", pypi.upstream, str(exc)))
        except LeaseLost as exc:
            self._lease_lost(report, exc)

    def _finish(self, run: _Run) -> None:
        """What the next sync starts from, and this run's record."""
        report, pages = run.report, run.pages
        if pages.validators() != run.validators and self._still_leader(report):
            save_validators(self.store, pages.validators())
        report.failures += [
            Failure(project, redact_url(self.config.pypi.upstream), why)
            for project, why in sorted(pages.problems.items())
        ]
        report.seconds = time.monotonic() - run.began
        run.record.finish(
            self.store,
            ok=report.ok,
            counts={
                "new": report.new,
                "skipped": report.skipped,
                "failed": len(report.failures),
                "built": report.built,
            },
            bytes_moved=report.bytes,
            errors=[f.as_json() for f in report.failures],
            extra={
                "timings": report.timings,
                "committed": report.committed,
                "dropped": report.dropped,
                "notes": report.notes,
                "environments": self._outcomes(run.plan, report),
            },
        )

    def _outcomes(self, plan: _Plan, report: SyncReport) -> dict[str, dict[str, str]]:
        """Per environment, each target's outcome: what the status page shows."""
        failed = {f.name for f in report.failures}
        out: dict[str, dict[str, str]] = {}
        for slot in slots(self.config.pypi):
            if slot.id in failed:
                outcome = "failed"
            elif slot.id in report.committed:
                outcome = "committed"
            else:
                outcome = "unchanged"
            out.setdefault(slot.environment.name, {})[slot.target.id] = outcome
        return out

    # -- shared state ----------------------------------------------------------------
    def _still_leader(self, report: SyncReport) -> bool:
        """Before a write of shared state that is no commit (the page's state, what the
        next sync starts from): a run whose lease went to another replica, paused past
        it, would write its stale view over the current leader's."""
        try:
            fence(JOB)
        except LeaseLost as exc:
            self._lease_lost(report, exc)
            return False
        return True

    @staticmethod
    def _lease_lost(report: SyncReport, exc: LeaseLost) -> None:
        if not any(f.name == "lease" for f in report.failures):  # said once a run
            report.failures.append(Failure("lease", "", str(exc)))

    # -- 5a. devpi, for publish ----------------------------------------------------
    def _push_devpi(self, report: SyncReport, run_began: float, ready: Future[None]) -> None:
        assert self.index is not None
        t0 = time.monotonic()
        try:
            ready.result()
            files = {w.sha256: w for m in load_all(self.store) for w in m.files}
            warmed = self.index.publish(files, changed=bool(report.committed))
            report.devpi_warmed = warmed.count
            report.failures.extend(warmed.failures)
            report.timings["devpi_offers_at"] = t0 - run_began + warmed.offered_after
        except (ServiceError, StoreError) as exc:
            report.failures.append(Failure("devpi", self.index.url, str(exc)))
        report.timings["devpi"] = time.monotonic() - t0


def _blocked_in(screen: Screen | None, environment: str) -> Callable[[str, str], bool] | None:
    """What the environment's policy keeps out, as a prefetch asks: no guess fetches it."""
    if screen is None:
        return None
    return lambda project, version: bool(screen.blocked(environment, [(project, version)]))


def _sources(screen: Screen | None, pypi: PypiConfig, builds: ClosureResolver) -> list[Source]:
    """What each closure is resolved around: the advisories (with a database), licences."""
    licences = Licences(pypi, builds.license_of)
    return [Advisories(screen), licences] if screen is not None else [licences]


def _left_out(slot: Slot, old: Manifest | None, left_out: list[Refused]) -> list[dict[str, Any]]:
    """The journal's word on each release the closure held and leaves for an advisory or
    its licence (what enters instead is the closure change itself): once, when it leaves."""
    held = {(w.project, w.version) for w in old.files} if old is not None else set()
    said = {
        (r.project, r.version, json.dumps(r.journal, sort_keys=True)): r
        for r in left_out
        if (r.project, r.version) in held
    }
    return [
        {
            "event": r.journal["event"],
            "environment": slot.environment.name,
            "target": slot.target.id,
            "project": r.project,
            "version": r.version,
            **{k: v for k, v in r.journal.items() if k != "event"},
        }
        for r in said.values()
    ]
