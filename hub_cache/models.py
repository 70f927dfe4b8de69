"""Hub manifests: one per mirrored model, under manifests/hub/<handle path>.json."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub_cache.formats import format_of
from hub_cache.formats.base import ModelFormat
from mirror.core.commits import compare_and_set
from mirror.core.contract_changes import ContractCheck
from mirror.core.handles import handle_path
from mirror.core.journal import Journal
from mirror.core.lease import fence
from mirror.core.licenses import License
from mirror.core.storage import BlobStore, DocumentReader, update_document

HUB_MANIFESTS = "manifests/hub"
# <handle path>.json: the last version of a model refused and why (refuse_model)
REFUSED_STATE = "state/hub/refused"


def model_key(path: str) -> str:
    # handle_path() already refused anything but plain segments; check again here,
    # at the one place a request path turns into a store key.
    handle_path(f"https://x/{path}")
    return f"{HUB_MANIFESTS}/{path}.json"


@dataclass
class ModelManifest:
    handle: str
    path: str
    sha256: str
    size: int
    synced_at: str
    source: str  # where the bytes came from (after redirects), or "import:<path>"
    archive: dict[str, Any] = field(default_factory=dict)
    # Filled by `tfmirror verify --deep`: name -> inputs/outputs with dtype and shape.
    signatures: dict[str, Any] = field(default_factory=dict)
    alias_of: str = ""  # set: this handle is another name of the model at that path
    # Set when its `[hub] models` entry pins a contract: this version checked against
    # it when it was published (mirror.core.contract_changes.ContractCheck).
    contract_check: dict[str, Any] = field(default_factory=dict)
    # Its licence as read at sync (mirror.core.licenses.License.as_json): name as its
    # upstream gave it, spdx id, and from "kaggle", "config" or "unknown"; {}: synced
    # before the mirror recorded licences.
    license: dict[str, str] = field(default_factory=dict)
    # Set when its entry requires a signature: who signed this version, as verified when
    # it was published (hub_cache.signatures: method, signer, signature file, trust file).
    signer: dict[str, str] = field(default_factory=dict)

    @property
    def model_license(self) -> License:
        return License.from_json(self.license)

    @property
    def model_format(self) -> ModelFormat | None:
        """Its format (hub_cache.formats), from the archive's root file; None for one no
        format here claims (a manifest written by a release that knew more formats)."""
        return format_of(self.archive)

    def served_files(self) -> dict[str, tuple[str, int]]:
        """The files of the model its client asks for one by one (a TF.js model's
        model.json and shards), each kept as a blob: relative path -> (sha256, size)."""
        files = self.archive.get("served_files")
        if not isinstance(files, dict):
            return {}
        return {
            str(name): (str(ref["sha256"]), int(ref["size"]))
            for name, ref in files.items()
            if isinstance(ref, dict) and "sha256" in ref and "size" in ref
        }

    def blobs(self) -> Iterator[tuple[str, int, str]]:
        """Every blob the manifest refers to, as (sha256, size, what it is): the archive
        (or the model file), and each file kept on its own."""
        yield self.sha256, self.size, self.handle
        for name, (sha256, size) in self.served_files().items():
            yield sha256, size, f"{self.handle} {name}"

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__, indent=1, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelManifest:
        doc = json.loads(data)
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


def load_model(store: DocumentReader, path: str) -> ModelManifest | None:
    try:
        key = model_key(path)
    except ValueError:
        return None
    data = store.get(key)
    return None if data is None else ModelManifest.from_bytes(data)


def save_model(store: BlobStore, manifest: ModelManifest) -> None:
    store.put(model_key(manifest.path), manifest.to_bytes())


def save_model_over(store: BlobStore, manifest: ModelManifest, read: ModelManifest | None) -> bool:
    """Commit `manifest` only over `read`, what the sync read before fetching and checking
    the archive (None: only where there was none); False if another writer committed
    in between (mirror.core.commits)."""
    return compare_and_set(
        store,
        model_key(manifest.path),
        manifest.to_bytes(),
        None if read is None else read.to_bytes(),
        lambda raw: ModelManifest.from_bytes(raw).to_bytes(),
    )


def commit_models(
    store: BlobStore,
    writes: Sequence[tuple[ModelManifest, ModelManifest | None]],
    actor: str,
    reason: str,
) -> list[dict[str, Any]]:
    """Commit model manifests, each over the one its writer read (None: only where there
    was none), in order, and journal those written as one entry: the one way a model's
    archive is put on offer (sync, alias, `hub import`), so none goes unrecorded. Stops
    at the first that another writer committed meanwhile. Returns the changes recorded."""
    changes: list[dict[str, Any]] = []
    for manifest, read in writes:
        fence("hub")  # a replica that took the lease over commits instead
        if not save_model_over(store, manifest, read):
            break
        changes.append(_change(store, manifest, read, writes))
    Journal(store).record(changes, actor, reason)
    return changes


def _change(
    store: DocumentReader,
    manifest: ModelManifest,
    read: ModelManifest | None,
    writes: Sequence[tuple[ModelManifest, ModelManifest | None]],
) -> dict[str, Any]:
    """What the journal records of one manifest written."""
    change: dict[str, Any] = {
        "event": "model replaced" if read is not None else "model published",
        "model": manifest.handle,
        "path": manifest.path,
        "before": read.sha256 if read is not None else None,
        "after": manifest.sha256,
    }
    check = ContractCheck.from_json(manifest.contract_check)
    if manifest.contract_check and check.state != "matches":
        # Published although it differs from the contract pinned for it (report).
        change["contract"] = {
            "pinned": check.pinned,
            "state": check.state,
            "changes": [c.shown() for c in check.changes] or [check.unread],
        }
    if manifest.license:
        change["license"] = manifest.model_license.shown()
    if manifest.signer:
        change["signer"] = manifest.signer
    if manifest.alias_of:
        # The model it is another name of, by its handle, as the journal names models.
        main = next((m for m, _ in writes if m.path == manifest.alias_of), None)
        main = main or load_model(store, manifest.alias_of)
        change.update(event="model aliased", alias_of=main.handle if main else manifest.alias_of)
    return change


def refuse_model(
    store: BlobStore, handle: str, path: str, sha256: str, kind: str, reason: str, actor: str
) -> bool:
    """Journal that a version of a model was not published and why (`kind`: what refused
    it, e.g. "contract"), so `history --model` names it. Once per version and reason: a
    scheduled sync that meets the same refused version again records nothing new.
    Returns whether it was journaled."""
    key = f"{REFUSED_STATE}/{path}.json"
    last = {"sha256": sha256, "kind": kind, "reason": reason}
    kept = store.get(key)
    if kept is not None and json.loads(kept) == last:
        return False
    change = {"event": "model refused", "model": handle, "path": path, **last}
    Journal(store).record([change], actor, f"{kind} refused")
    store.put(key, json.dumps(last, sort_keys=True).encode())
    return True


def update_model(store: BlobStore, path: str, change: Callable[[ModelManifest], bool]) -> bool:
    """Change the model's manifest as it is now, conditionally: a writer that read it
    before a long job (a TensorFlow load) never reverts what a sync published since.
    `change` edits the manifest in place and says whether to write it."""

    def apply(raw: bytes | None) -> bytes | None:
        if raw is None:
            return None
        manifest = ModelManifest.from_bytes(raw)
        return manifest.to_bytes() if change(manifest) else None

    return update_document(store, model_key(path), apply)


def load_models(store: DocumentReader) -> list[ModelManifest]:
    out = []
    for key in store.list(HUB_MANIFESTS):
        data = store.get(key) if key.endswith(".json") else None
        if data is not None:
            out.append(ModelManifest.from_bytes(data))
    return sorted(out, key=lambda m: m.path)
