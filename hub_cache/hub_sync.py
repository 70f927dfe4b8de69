"""The hub sync: fetch each model's compressed archive, validate it, publish it. The blob
is stored under the hash of what arrived, validated from the store, and only then does a
manifest refer to it; a rejected archive is deleted and recorded with its reason, and
the model keeps serving what it served before."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote

from hub_cache.archive import Capture, inspect_archive
from hub_cache.contracts import check_contract, keep_graph_facts, model_contract
from hub_cache.errors import ArchiveRejected, LicenseUnread, SignatureRefused
from hub_cache.formats import format_named
from hub_cache.formats.base import ModelFormat
from hub_cache.formats.blob_files import seekable_blob
from hub_cache.formats.saved_model import SAVED_MODEL as SAVED_MODEL_FORMAT
from hub_cache.formats.saved_model_ops import SAVED_MODEL
from hub_cache.formats.tflite import TFLITE_ARCHIVE_KEY
from hub_cache.licenses import model_license, refused_license
from hub_cache.limits import ArchiveLimits, caps
from hub_cache.models import ModelManifest, commit_models, load_model, refuse_model
from hub_cache.signatures import verify_folder
from mirror.core.config import Config, HubConfig, HubModel
from mirror.core.config.hub import contract_policy, license_policy
from mirror.core.config.signatures import SignedBy
from mirror.core.errors import DownloadError, StoreError
from mirror.core.handles import handle_path
from mirror.core.hosts import HostPolicy
from mirror.core.journal import actor_for
from mirror.core.licenses import License
from mirror.core.model_forms import SAVEDMODEL, TFLITE
from mirror.core.redact import redact_url
from mirror.core.runs import Failure, RunRecord, utcnow
from mirror.core.scratch import scratch_dir
from mirror.core.sizes import human_bytes
from mirror.core.storage import BlobStore
from mirror.core.upstream import Fetched, FetchPolicy, copy_local, fetch_verified


class ModelStatus(StrEnum):
    NEW = "new"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass
class ModelOutcome:
    handle: str
    status: ModelStatus
    url: str = ""
    reason: str = ""
    bytes: int = 0


@dataclass
class HubReport:
    outcomes: list[ModelOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(o.status is not ModelStatus.FAILED for o in self.outcomes)

    def count(self, status: ModelStatus) -> int:
        return sum(o.status == status for o in self.outcomes)

    def summary(self) -> str:
        moved = sum(o.bytes for o in self.outcomes)
        return (
            f"hub sync: {self.count(ModelStatus.NEW)} new, "
            f"{self.count(ModelStatus.UNCHANGED)} unchanged, "
            f"{self.count(ModelStatus.FAILED)} failed, {human_bytes(moved)}, {self.seconds:.1f} s"
        )


def fetch_policy(config: Config, model: HubModel) -> FetchPolicy:
    """One model's download: capped (its max_mb, else the unpacked cap: a compressed
    archive is never much larger than what it unpacks to), within the deadline, and
    redirected only to public hosts or to those the config names."""
    hub = config.hub
    cap_mb = model.max_mb or hub.max_uncompressed_mb
    named = [model.handle, config.pypi.upstream, hub.kaggle_api, *hub.allow_hosts]
    if model.source.startswith(("http://", "https://")):
        named.append(model.source)
    return FetchPolicy(
        timeout=hub.timeout,
        retries=hub.retries,
        max_bytes=cap_mb * 2**20,
        cap_setting="max_mb" if model.max_mb else "[hub] max_uncompressed_mb",
        deadline=hub.deadline,
        hosts=HostPolicy.trusting(named, "[hub] allow_hosts"),
    )


def compressed_url(model: HubModel, hub: HubConfig) -> str:
    """Where a model is fetched: its source; Kaggle's download API for a Kaggle handle;
    else the handle as its form's client asks tfhub.dev for it (`?tf-hub-format=
    compressed`, `?lite-format=tflite`; tfhub.dev redirects onwards)."""
    if model.source:
        return model.source
    if model.kaggle is not None:
        return model.kaggle.download_url(hub.kaggle_api)
    joiner = "&" if "?" in model.handle else "?"
    return f"{model.handle}{joiner}{_format(model.form).fetch_query}"


def fetched_form(model: HubModel) -> str:
    """The form a model arrives in: its own, but Kaggle serves every framework archived,
    so a Kaggle TFLite model comes as a tar.gz of its .tflite files."""
    if model.kaggle is not None and not model.source and model.form == TFLITE:
        return TFLITE_ARCHIVE_KEY
    return model.form


def _format(form: str) -> ModelFormat:
    found = format_named(form)
    assert found is not None, f"{form}: every form the config takes has a format"
    return found


@dataclass(frozen=True)
class SignatureCheck:
    """Who must have signed a model, and how long a check may wait for its answer."""

    signed_by: SignedBy
    timeout: float


def inspect_model(
    store: BlobStore,
    fetched: Fetched,
    form: str | None,
    limits: ArchiveLimits,
    signature: SignatureCheck | None = None,
) -> dict[str, object]:
    """The stored model's facts, as its manifest keeps them, checked as its form's client
    reads it: one file (a .tflite) by its format's reader, else as an archive (and, for a
    form whose client asks for its files one by one, the extracted folder, each file then
    kept as a blob of its own: `served_files`). `form` None: whatever archive it is.
    With `signature`, the extracted files must carry a signature that verifies (else
    SignatureRefused); the signer is then one of the facts, as `signer`."""
    wanted = _format(form) if form is not None else None
    if wanted is not None and wanted.single_file:
        if signature is not None:  # the config refuses this; an import may still ask
            raise SignatureRefused(f"no signature: a single {wanted.name} file carries none")
        with seekable_blob(store, fetched.sha256) as (reader, size):
            return wanted.inspect_file(reader, size, f"the {wanted.name} file", limits)
    with scratch_dir("tfmirror-model-") as folder:
        # A form whose folder is checked, or whose signature is, is extracted in the one
        # pass that checks the archive; one found only by its root files (an import)
        # takes a second pass.
        early = wanted is not None and (wanted.checks_folder or signature is not None)
        with store.open_blob(fetched.sha256) as reader:
            facts = inspect_archive(
                reader, fetched.size, limits, folder if early else None, GRAPH_CAPTURE
            )
        found = facts.model_format
        if wanted is not None and found is not wanted:
            raise ArchiveRejected(f"asked for a {wanted.name} model, got a {found.name} archive")
        if facts.captured is not None and found is SAVED_MODEL_FORMAT:
            keep_graph_facts(store, fetched.sha256, facts.captured)
        if not early and (found.checks_folder or signature is not None):
            with store.open_blob(fetched.sha256) as reader:
                inspect_archive(reader, fetched.size, limits, extract_to=folder)
        signed: dict[str, object] = {}
        if signature is not None:
            signed["signer"] = verify_folder(folder, signature.signed_by, signature.timeout)
        if not found.checks_folder:
            return {**facts.as_json(), **signed}
        checked = found.check_folder(folder)
        served = {name: _keep_file(store, path) for name, path in _files_in(folder)}
    return {**facts.as_json(), **checked, "served_files": served, **signed}


# A SavedModel's graph is kept from the archive's one checking pass for its contract and
# ops; one over this is read again later (rare: real graphs are a few MB).
GRAPH_CAPTURE = Capture(SAVED_MODEL, 256 * 2**20)


def _files_in(folder: Path) -> list[tuple[str, Path]]:
    return sorted(
        (Path(root, name).relative_to(folder).as_posix(), Path(root, name))
        for root, _, names in os.walk(folder)
        for name in names
    )


def _keep_file(store: BlobStore, path: Path) -> dict[str, object]:
    """One file of a model folder, stored as a blob: its sha256 and size."""
    kept = copy_local(store, path, 0)
    return {"sha256": kept.sha256, "size": kept.size}


# Says whether a validated new version may be served: None, or why not (verify.compat
# checks it against the environments its [hub] models entry names).
Gate = Callable[[ModelManifest], str | None]


@dataclass(frozen=True)
class Commit:
    """Who commits a model, and why: what its journal entry says (and the aliases it
    is served at too)."""

    actor: str
    reason: str
    aliases: tuple[str, ...] = ()


def publish_model(
    store: BlobStore,
    handle: str,
    path: str,
    fetched: Fetched,
    hub: HubConfig,
    commit: Commit,
    gate: Gate | None = None,
    form: str | None = SAVEDMODEL,
    license: License | None = None,
) -> ModelOutcome:
    """Validate a stored model (in `form`: mirror.core.model_forms) and commit its
    manifest, with its aliases and its licence, unless it is what we serve (then only
    aliases new since) or the gate refuses it (then what was served stays)."""
    old = load_model(store, path)
    if old is not None and old.sha256 == fetched.sha256:
        commit_models(store, alias_writes(store, old, commit.aliases), commit.actor, commit.reason)
        return ModelOutcome(handle, ModelStatus.UNCHANGED, fetched.url, bytes=fetched.size)
    entry = next((m for m in hub.models if m.handle == handle), None)  # None: an import
    signed_by = entry.signed_by if entry is not None else None
    signature = SignatureCheck(signed_by, hub.timeout) if signed_by is not None else None
    try:
        facts = inspect_model(store, fetched, form, caps(hub), signature)
    except SignatureRefused as exc:
        # As a contract's refusal: journaled, the blob stays until gc, nothing serves it.
        refuse_model(store, handle, path, fetched.sha256, "signature", str(exc), commit.actor)
        return ModelOutcome(handle, ModelStatus.FAILED, fetched.url, str(exc), fetched.size)
    except ArchiveRejected as exc:
        # The blob stays until gc, like a refused one below: no manifest lists it, so
        # nothing serves it, and only gc knows whether anything else (a snapshot, a
        # replica's commit) does.
        return ModelOutcome(
            handle, ModelStatus.FAILED, fetched.url, f"rejected: {exc}", fetched.size
        )
    signer = facts.pop("signer", None)  # kept on its own, not as a fact of the archive
    manifest = ModelManifest(
        handle=handle,
        path=path,
        sha256=fetched.sha256,
        size=fetched.size,
        synced_at=utcnow(),
        source=fetched.url,
        archive=facts,
        license=license.as_json() if license is not None else {},
        signer=signer if isinstance(signer, dict) else {},
    )
    contract = model_contract(store, manifest.sha256, facts, caps(hub).max_uncompressed)
    if entry is not None and entry.contract is not None:
        check = check_contract(contract, entry.contract, contract_policy(entry, hub))
        if check.blocks:
            # As a gate's refusal: the blob stays until gc, nothing serves it.
            refuse_model(
                store, handle, path, fetched.sha256, "contract", check.refusal(), commit.actor
            )
            return ModelOutcome(
                handle, ModelStatus.FAILED, fetched.url, check.refusal(), fetched.size
            )
        manifest.contract_check = check.as_json()
    refused = gate(manifest) if gate is not None else None
    if refused is not None:
        # The blob stays until gc: no manifest lists it, so nothing serves it.
        return ModelOutcome(handle, ModelStatus.FAILED, fetched.url, refused, fetched.size)
    writes = [(manifest, old), *alias_writes(store, manifest, commit.aliases)]
    if not commit_models(store, writes, commit.actor, commit.reason):
        reason = "another writer committed this model since this run read it; its manifest stands"
        return ModelOutcome(handle, ModelStatus.FAILED, fetched.url, reason, fetched.size)
    return ModelOutcome(handle, ModelStatus.NEW, fetched.url, bytes=fetched.size)


def kaggle_auth(url: str) -> str:
    """Kaggle's API with the account in KAGGLE_USERNAME and KAGGLE_KEY, when set (as
    the kaggle CLI reads them). It rides in the URL, which is never stored or shown
    with it; only the first hop gets it, never the signed storage URL after it."""
    user, key = os.environ.get("KAGGLE_USERNAME"), os.environ.get("KAGGLE_KEY")
    if not (user and key):
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{quote(user, safe='')}:{quote(key, safe='')}@{rest}"


def alias_writes(
    store: BlobStore, main: ModelManifest, aliases: Sequence[str]
) -> list[tuple[ModelManifest, ModelManifest | None]]:
    """The manifests that serve `main` at each alias too (e.g. the tfhub.dev handle it
    had before it moved to Kaggle), naming the same verified blob, each with the one it
    replaces; none for an alias that already serves it."""
    writes: list[tuple[ModelManifest, ModelManifest | None]] = []
    for alias in aliases:
        path = handle_path(alias)
        current = load_model(store, path)
        if current is not None and current.sha256 == main.sha256:
            continue
        copy = ModelManifest.from_bytes(main.to_bytes())
        copy.handle, copy.path, copy.alias_of = alias, path, main.path
        writes.append((copy, current))
    return writes


class HubSync:
    def __init__(self, config: Config, store: BlobStore, gate: Gate | None = None) -> None:
        self.config = config
        self.store = store
        self.gate = gate

    def sync_model(self, model: HubModel, trigger: str = "manual") -> ModelOutcome:
        url = compressed_url(model, self.config.hub)
        shown = redact_url(url)
        if model.kaggle is not None and not model.source:
            url = kaggle_auth(url)
        policy = fetch_policy(self.config, model)
        license = self._license(model, policy)
        if isinstance(license, str):
            return ModelOutcome(model.handle, ModelStatus.FAILED, shown, license)
        # Before the download: a model the policy refuses costs no bandwidth, and the
        # version served before stays.
        refused = refused_license(self.store, model, self.config.hub, license, actor_for(trigger))
        if refused is not None:
            return ModelOutcome(model.handle, ModelStatus.FAILED, shown, f"refused: {refused}")
        try:
            if model.source and not model.source.startswith(("http://", "https://")):
                fetched = copy_local(self.store, Path(model.source), policy.max_bytes or 0)
            else:
                fetched = fetch_verified(self.store, url, None, None, policy)
        except (DownloadError, StoreError) as exc:
            return ModelOutcome(model.handle, ModelStatus.FAILED, shown, str(exc))
        except OSError as exc:
            reason = f"cannot read {exc.filename or shown}: {exc.strerror or exc}"
            return ModelOutcome(model.handle, ModelStatus.FAILED, shown, reason)
        commit = Commit(actor_for(trigger), "hub sync", tuple(model.aliases))
        return publish_model(
            self.store,
            model.handle,
            model.path,
            fetched,
            self.config.hub,
            commit,
            self.gate,
            fetched_form(model),
            license,
        )

    def _license(self, model: HubModel, policy: FetchPolicy) -> License | str:
        """The model's licence, or why its sync fails: Kaggle's metadata unread where a
        licence policy applies to it (without a policy it is recorded as unknown)."""
        auth = ""
        if model.kaggle is not None and not model.source:
            auth = kaggle_auth(model.kaggle.instance_url(self.config.hub.kaggle_api))
        try:
            return model_license(self.config, model, policy, auth)
        except LicenseUnread as exc:
            if license_policy(model, self.config.hub).applies:
                return f"its licence cannot be checked against the licence policy: {exc}"
            return License.unknown(str(exc))

    def run(self, trigger: str = "manual") -> HubReport:
        record = RunRecord.begin("hub", trigger)
        began = time.monotonic()
        report = HubReport([self.sync_model(m, trigger) for m in self.config.hub.models])
        report.seconds = time.monotonic() - began
        record.finish(
            self.store,
            ok=report.ok,
            counts={s.value: report.count(s) for s in ModelStatus},
            bytes_moved=sum(o.bytes for o in report.outcomes),
            errors=[
                Failure(o.handle, o.url, o.reason).as_json()
                for o in report.outcomes
                if o.status is ModelStatus.FAILED
            ],
        )
        return report
