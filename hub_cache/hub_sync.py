"""The hub sync: fetch each model's compressed archive, validate it, publish it.

The blob is stored under the hash of what arrived, validated from the store, and only
then does a manifest refer to it; a rejected archive is deleted and recorded with its
reason, and the model keeps serving what it served before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from hub_cache.archive import ArchiveRejected, Caps, inspect_archive
from hub_cache.models import ModelManifest, load_model, load_models, save_model
from mirror.core.config import Config, HubConfig, HubModel
from mirror.core.runs import Failure, RunRecord, utcnow
from mirror.core.storage import BlobStore, HashingWriter, StoreError
from mirror.core.upstream import DownloadError, Fetched, RetryPolicy, fetch_verified

COMPRESSED_QUERY = "tf-hub-format=compressed"


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
            f"{self.count(ModelStatus.FAILED)} failed, {moved / 1e6:.1f} MB, {self.seconds:.1f} s"
        )


def caps(hub: HubConfig) -> Caps:
    return Caps(max_uncompressed=hub.max_uncompressed_mb * 2**20, max_ratio=hub.max_ratio)


def compressed_url(model: HubModel) -> str:
    if model.source:
        return model.source
    joiner = "&" if "?" in model.handle else "?"
    return f"{model.handle}{joiner}{COMPRESSED_QUERY}"


def copy_local(store: BlobStore, path: Path) -> Fetched:
    """A local tarball into the store, hashed on the way (DMZ sources and imports)."""
    sink = HashingWriter(store.new_blob())
    try:
        with path.open("rb") as source:
            while chunk := source.read(1024 * 1024):
                sink.write(chunk)
        sha = sink.publish()
    except BaseException:
        sink.discard()
        raise
    return Fetched(sha, sink.size, f"file:{path}")


def publish_model(
    store: BlobStore, handle: str, path: str, fetched: Fetched, hub: HubConfig
) -> ModelOutcome:
    """Validate a stored archive and commit its manifest, unless it is what we serve."""
    old = load_model(store, path)
    if old is not None and old.sha256 == fetched.sha256:
        return ModelOutcome(handle, ModelStatus.UNCHANGED, fetched.url, bytes=fetched.size)
    try:
        with store.open_blob(fetched.sha256) as reader:
            facts = inspect_archive(reader, fetched.size, caps(hub))
    except ArchiveRejected as exc:
        if not any(m.sha256 == fetched.sha256 for m in load_models(store)):
            store.delete_blob(fetched.sha256)
        return ModelOutcome(
            handle, ModelStatus.FAILED, fetched.url, f"rejected: {exc}", fetched.size
        )
    manifest = ModelManifest(
        handle=handle,
        path=path,
        sha256=fetched.sha256,
        size=fetched.size,
        synced_at=utcnow(),
        source=fetched.url,
        archive=facts.as_json(),
    )
    save_model(store, manifest)
    return ModelOutcome(handle, ModelStatus.NEW, fetched.url, bytes=fetched.size)


class HubSync:
    def __init__(self, config: Config, store: BlobStore) -> None:
        self.config = config
        self.store = store
        self.policy = RetryPolicy(timeout=config.hub.timeout, retries=config.hub.retries)

    def sync_model(self, model: HubModel) -> ModelOutcome:
        url = compressed_url(model)
        try:
            if model.source and not model.source.startswith(("http://", "https://")):
                fetched = copy_local(self.store, Path(model.source))
            else:
                fetched = fetch_verified(self.store, url, None, None, self.policy)
        except (DownloadError, StoreError) as exc:
            return ModelOutcome(model.handle, ModelStatus.FAILED, url, str(exc))
        except OSError as exc:
            return ModelOutcome(
                model.handle, ModelStatus.FAILED, url, f"cannot read: {exc.strerror}"
            )
        return publish_model(self.store, model.handle, model.path, fetched, self.config.hub)

    def run(self, trigger: str = "manual") -> HubReport:
        record = RunRecord.begin("hub", trigger)
        began = time.monotonic()
        report = HubReport([self.sync_model(m) for m in self.config.hub.models])
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
