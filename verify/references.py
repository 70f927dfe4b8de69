"""Every blob a manifest refers to, with what it is and where it can be fetched again."""

from __future__ import annotations

from dataclasses import dataclass, field

from hub_cache.hub_sync import compressed_url
from hub_cache.models import load_models
from mirror.core.config import Config
from mirror.core.snapshots import snapshot_readers
from mirror.core.storage import BlobStore, DocumentReader
from mirror.pypi.manifest import load_all


@dataclass(frozen=True)
class MadeFrom:
    """The archive a model file kept on its own was extracted from (a TF.js shard): the
    file is made again from it, as the sync made it, rather than fetched."""

    sha256: str
    size: int
    form: str | None  # the model's format key (hub_cache.formats)


@dataclass
class Reference:
    sha256: str
    size: int | None
    names: list[str] = field(default_factory=list)  # wheel filenames, model handles
    sources: list[str] = field(default_factory=list)  # upstream URLs or local paths
    made_from: list[MadeFrom] = field(default_factory=list)


def referenced(config: Config, store: BlobStore) -> dict[str, Reference]:
    refs: dict[str, Reference] = {}

    def add(sha: str, size: int | None, name: str, source: str) -> None:
        ref = refs.setdefault(sha, Reference(sha, size))
        ref.names.append(name)
        if source and source not in ref.sources:
            ref.sources.append(source)

    configured = {m.handle: m for m in config.hub.models}

    def add_all(source: DocumentReader, where: str) -> None:
        for manifest in load_all(source):
            for blob in manifest.blobs():
                if not where or blob.sha256 not in refs:
                    add(blob.sha256, blob.size, blob.name + where, blob.source)
        for model in load_models(source):
            hub_model = configured.get(model.handle)
            # A signed storage URL from the last sync has expired by now: ask the handle again.
            url = compressed_url(hub_model, config.hub) if hub_model else ""
            held = model.model_format
            archive = MadeFrom(model.sha256, model.size, held.key if held else None)
            for sha256, size, what in model.blobs():
                if not where or sha256 not in refs:
                    add(sha256, size, what + where, url if sha256 == model.sha256 else "")
                    if sha256 != model.sha256 and archive not in refs[sha256].made_from:
                        refs[sha256].made_from.append(archive)

    add_all(store, "")
    # What only a snapshot holds now is scrubbed (and repaired) as well: a rollback to
    # it must find every byte.
    for reader in snapshot_readers(store):
        add_all(reader, f" (snapshot {reader.snapshot.name})")
    return refs
