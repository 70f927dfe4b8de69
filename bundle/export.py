"""Export on the outer mirror: the manifests, and the blobs the inner side lacks. Each
export is remembered in the store (state/bundle/exports/<id>.json, with the blobs it
carried), so the next one carries only what came since; bytes stream from the store to
the parts, re-hashed on the way (a blob that rotted in the store is not carried over),
so memory stays flat."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bundle.contents import read_manifests, referenced
from bundle.errors import BundleError
from bundle.layout import CHUNK, INDEX, JOURNAL_TAIL, SIGNATURE, Index, Item, PartWriter
from mirror.advisories.database import CURRENT, database_blobs
from mirror.core.errors import BlobNotFound
from mirror.core.journal import OUTER, Journal, as_lines
from mirror.core.snapshots import Snapshot, snapshot_key, snapshot_names
from mirror.core.storage import BlobStore

EXPORTS = "state/bundle/exports"
LAST_EXPORT = "state/bundle/last-export"


@dataclass(frozen=True)
class ExportedBundle:
    id: str
    follows: str | None
    blobs: int
    bytes: int
    parts: int


def _record(store: BlobStore, bundle_id: str) -> dict[str, object]:
    data = store.get(f"{EXPORTS}/{bundle_id}.json")
    if data is None:
        raise BundleError(f"no export {bundle_id} was made from this mirror")
    doc: dict[str, object] = json.loads(data)
    return doc


def _chain(store: BlobStore, bundle_id: str) -> Iterator[dict[str, object]]:
    """The export records of `bundle_id` and every export it follows, newest first."""
    current: str | None = bundle_id
    while current is not None:
        doc = _record(store, current)
        yield doc
        follows = doc.get("follows")
        current = None if follows is None else str(follows)


def carried_through(store: BlobStore, bundle_id: str) -> set[str]:
    """Every blob the chain of exports ending at `bundle_id` carried."""
    return {str(b) for doc in _chain(store, bundle_id) for b in doc["blobs"]}  # type: ignore[attr-defined]


def held_after(store: BlobStore, bundle_id: str) -> set[str]:
    """The blobs a mirror that imported `bundle_id` is known to hold: every blob that
    bundle's manifests refer to (the import proved each present, and the inner gc keeps
    what its manifests list). Not every blob the chain ever carried: one no manifest
    listed any more may be gone to the inner gc, and must travel again if it returns.
    An export by the release before recorded only what it carried: that, then."""
    doc = _record(store, bundle_id)
    listed = doc.get("referenced")
    if isinstance(listed, list):
        return {str(b) for b in listed}
    return carried_through(store, bundle_id)


def snapshots_carried(store: BlobStore, bundle_id: str) -> set[str]:
    """The snapshots the chain of exports ending at `bundle_id` carried (each once:
    a snapshot never changes)."""
    return {str(n) for doc in _chain(store, bundle_id) for n in doc.get("snapshots", [])}  # type: ignore[attr-defined]


def journal_carried(store: BlobStore, bundle_id: str, lines: list[bytes]) -> int:
    """How many of the journal's entries (`lines`) the inner side holds after importing
    `bundle_id`, if they are still the entries it carried; 0 (carry it whole) when the
    journal was cut short or its last carried entry rewritten since, or when an export
    of the release before recorded no count."""
    doc = _record(store, bundle_id)
    count, last = doc.get("journal_entries"), doc.get("journal_last")
    if not isinstance(count, int) or not isinstance(last, str) or not 0 < count <= len(lines):
        return 0
    if hashlib.sha256(lines[count - 1].rstrip(b"\n")).hexdigest() != last:
        return 0
    return count


def last_export(store: BlobStore) -> str | None:
    data = store.get(LAST_EXPORT)
    return data.decode().strip() if data else None


def export(
    store: BlobStore,
    key: Ed25519PrivateKey,
    out: Path,
    since: str | None = None,
    full: bool = False,
    max_part_size: int | None = None,
) -> ExportedBundle:
    follows = None if full else (since or last_export(store))
    have = held_after(store, follows) if follows else set()
    if out.exists() and any(out.iterdir()):
        raise BundleError(f"{out} is not empty; export writes into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    manifests = read_manifests(store)
    # Snapshots the inner side has not had yet, and the blobs they hold.
    sent = snapshots_carried(store, follows) if follows else set()
    snapshots = {
        name: raw
        for name in snapshot_names(store)
        if name not in sent and (raw := store.get(snapshot_key(name))) is not None
    }
    held = referenced(manifests) | {
        sha for raw in snapshots.values() for sha in Snapshot.from_bytes(raw).blobs
    }
    # The advisory database in force, so the inner side matches and blocks by the same.
    advisories = store.get(CURRENT)
    held |= database_blobs(store)
    wanted = held - have
    now = datetime.now(UTC)
    index = Index(f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}", follows, now.isoformat())
    writer = PartWriter(out, max_part_size)
    for name, data in sorted(manifests.items()):
        writer.write(data)
        index.items.append(Item("manifest", name, hashlib.sha256(data).hexdigest(), len(data)))
    # The outer mirror's journal: the inner side verifies its history. Only the entries
    # after those the bundle it follows carried, when that one's last entry is still
    # here as it was (the first new entry names it by sha256, so the inner side checks
    # the tail against what it holds); else whole, so it sees what was cut or rewritten.
    lines = as_lines(Journal(store)).splitlines(keepends=True)
    start = journal_carried(store, follows, lines) if follows else 0
    journal = b"".join(lines[start:])
    if start:
        writer.write(journal)
        index.items.append(
            Item(JOURNAL_TAIL, str(start), hashlib.sha256(journal).hexdigest(), len(journal))
        )
    elif journal:
        writer.write(journal)
        index.items.append(
            Item("journal", OUTER, hashlib.sha256(journal).hexdigest(), len(journal))
        )
    if advisories is not None:
        writer.write(advisories)
        sha = hashlib.sha256(advisories).hexdigest()
        index.items.append(Item("advisories", CURRENT, sha, len(advisories)))
    for name, raw in sorted(snapshots.items()):
        writer.write(raw)
        item_name = snapshot_key(name)
        index.items.append(Item("snapshot", item_name, hashlib.sha256(raw).hexdigest(), len(raw)))
    for sha in sorted(wanted):
        index.items.append(_copy_blob(store, sha, writer))
    index.parts = writer.close()
    body = index.to_bytes()
    (out / INDEX).write_bytes(body)
    (out / SIGNATURE).write_bytes(key.sign(body))
    record = {
        "id": index.id,
        "follows": follows,
        "blobs": sorted(wanted),
        "referenced": sorted(held),
        "snapshots": sorted(snapshots),
        # The journal as the inner side holds it after this import: its entries, and
        # the last one's sha256 (what the next bundle's tail must continue).
        "journal_entries": len(lines),
        "journal_last": hashlib.sha256(lines[-1].rstrip(b"\n")).hexdigest() if lines else "",
    }
    store.put(f"{EXPORTS}/{index.id}.json", json.dumps(record).encode())
    store.put(LAST_EXPORT, index.id.encode())
    blob_bytes = sum(i.size for i in index.items if i.kind == "blob")
    return ExportedBundle(index.id, follows, len(wanted), blob_bytes, len(index.parts))


def _copy_blob(store: BlobStore, sha: str, writer: PartWriter) -> Item:
    digest = hashlib.sha256()
    size = 0
    try:
        with store.open_blob(sha) as reader:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
                writer.write(chunk)
                size += len(chunk)
    except BlobNotFound:
        raise BundleError(
            f"blob {sha} is referenced but not in the store: run verify --fix"
        ) from None
    if digest.hexdigest() != sha:
        raise BundleError(
            f"blob {sha} in the store hashes to {digest.hexdigest()}: run verify --fix"
        )
    return Item("blob", sha, sha, size)
