"""Snapshots: what the mirror offered at one moment, kept as it was.

A snapshot is one immutable document: every committed manifest's exact text at that
moment (every environment's closures and every model) and the sha256 of every blob
they refer to. Cheap (manifests only; the blobs are shared with the live mirror), and
gc keeps every blob any snapshot names, so a snapshot stays whole however far the
live mirror moves on.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from mirror.core.errors import UsageError
from mirror.core.storage import BlobStore

SNAPSHOTS = "snapshots"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def snapshot_key(name: str) -> str:
    return f"{SNAPSHOTS}/{name}.json"


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(
            f"snapshot name {name[:80]!r}: use letters, digits, '.', '-' and '_' "
            "(up to 64, starting with a letter or digit), e.g. 2026-11-28-known-good"
        )
    return name


@dataclass(frozen=True)
class Snapshot:
    name: str
    created: str
    actor: str
    note: str = ""
    manifests: dict[str, str] = field(default_factory=dict)  # store key -> exact text
    blobs: list[str] = field(default_factory=list)  # every blob the manifests refer to

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Snapshot:
        doc = json.loads(raw)
        return cls(
            name=str(doc["name"]),
            created=str(doc["created"]),
            actor=str(doc.get("actor", "")),
            note=str(doc.get("note", "")),
            manifests={str(k): str(v) for k, v in doc.get("manifests", {}).items()},
            blobs=[str(b) for b in doc.get("blobs", [])],
        )


def save_snapshot(store: BlobStore, snapshot: Snapshot) -> bool:
    """Write it, once: False if a snapshot of that name exists (they never change)."""
    return store.put_if(snapshot_key(check_name(snapshot.name)), snapshot.to_bytes(), None)


def load_snapshot(store: BlobStore, name: str) -> Snapshot | None:
    raw = store.get(snapshot_key(check_name(name)))
    return Snapshot.from_bytes(raw) if raw is not None else None


def snapshot_names(store: BlobStore) -> list[str]:
    names = []
    for key in store.list(SNAPSHOTS):
        stem = key.rsplit("/", 1)[-1]
        if stem.endswith(".json") and _NAME.match(stem[:-5]):
            names.append(stem[:-5])
    return sorted(names)


def delete_snapshot(store: BlobStore, name: str) -> bool:
    if store.get(snapshot_key(check_name(name))) is None:
        return False
    store.delete(snapshot_key(name))
    return True


def snapshot_blobs(store: BlobStore) -> set[str]:
    """Every blob some snapshot refers to: gc keeps them."""
    out: set[str] = set()
    for name in snapshot_names(store):
        raw = store.get(snapshot_key(name))
        if raw is None:
            continue
        try:
            out.update(Snapshot.from_bytes(raw).blobs)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # unreadable: verify reports it; its blobs are not guessed at
    return out
