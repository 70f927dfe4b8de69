"""Snapshots: what the mirror offered at one moment, kept as it was, in one immutable
document: every committed manifest's exact text (every environment's closures and every
model) and the sha256 of every blob they refer to. Cheap, since the blobs are shared
with the live mirror, and whole however far the live mirror moves on, since gc keeps
every blob any snapshot names."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TypeVar

from mirror.core.errors import UsageError
from mirror.core.storage import BlobStore, update_document

T = TypeVar("T")

SNAPSHOTS = "snapshots"
PROMOTED = "state/promoted.json"
# `@live` is always the live mirror, whatever is promoted: no snapshot takes the name.
LIVE = "live"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def snapshot_key(name: str) -> str:
    return f"{SNAPSHOTS}/{name}.json"


def check_name(name: str) -> str:
    if name == LIVE:
        raise UsageError(f"snapshot name {LIVE!r} is taken: @{LIVE} is always the live mirror")
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


def replace_snapshot(store: BlobStore, snapshot: Snapshot, version: str) -> bool:
    """Write it over the version read. Only a migration does (credentials taken out of
    its manifests' URLs): what a snapshot offers never changes."""
    return store.put_if(snapshot_key(check_name(snapshot.name)), snapshot.to_bytes(), version)


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


def snapshot_stamps(store: BlobStore) -> dict[str, str]:
    """Each snapshot's name and its document's stamp (mirror.core.storage), one listing."""
    stamps = {}
    for key, stamp in store.stamps(SNAPSHOTS).items():
        stem = key.rsplit("/", 1)[-1]
        if stem.endswith(".json") and _NAME.match(stem[:-5]):
            stamps[stem[:-5]] = stamp
    return stamps


def delete_snapshot(store: BlobStore, name: str) -> bool:
    if store.get(snapshot_key(check_name(name))) is None:
        return False
    store.delete(snapshot_key(name))
    return True


_UNREADABLE = (ValueError, KeyError, TypeError, AttributeError)


def unreadable_snapshots(store: BlobStore) -> list[str]:
    """Snapshots whose document does not parse: nothing of them is served or kept."""
    broken = []
    for name in snapshot_names(store):
        try:
            load_snapshot(store, name)
        except _UNREADABLE:
            broken.append(name)
    return broken


def snapshot_blobs(store: BlobStore) -> set[str]:
    """Every blob some snapshot refers to: gc keeps them."""
    out: set[str] = set()
    for name in snapshot_names(store):
        raw = store.get(snapshot_key(name))
        if raw is None:
            continue
        try:
            out.update(Snapshot.from_bytes(raw).blobs)
        except _UNREADABLE:
            continue  # unreadable: verify reports it; its blobs are not guessed at
    return out


class FrozenDocuments:
    """A snapshot's manifests, read like the store's documents (`get`, `list`): every
    reader of manifests (index pages, model lists, lock files) reads a snapshot as it
    reads the live mirror, one renderer over either."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._docs = {
            k: v.encode("utf-8", "surrogateescape") for k, v in snapshot.manifests.items()
        }
        self.blobs = frozenset(snapshot.blobs)
        self._memo: dict[object, object] = {}
        self._memo_lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        return self._docs.get(key)

    def list(self, prefix: str) -> list[str]:
        folder = prefix.rstrip("/") + "/"
        return sorted(k for k in self._docs if k.startswith(folder))

    def memo(self, key: object, make: Callable[[], T]) -> T:
        """What `make` derives from these documents, made once: they never change."""
        with self._memo_lock:
            if key not in self._memo:
                self._memo[key] = make()
            return self._memo[key]  # type: ignore[return-value]


class _Readers:
    """Snapshots parsed once per process, kept by their document's stamp (its ETag, or
    its file's identity on disk), not by name: a snapshot deleted and made again under
    the same name is another document, read afresh. The stamps are listed again after a
    few seconds, so a deleted or remade snapshot is served as it now is, a running
    front's promoted one too."""

    RECHECK = 5.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parsed: dict[tuple[str, str, str], FrozenDocuments] = {}  # (store, name, stamp)
        self._stamps: dict[str, tuple[float, dict[str, str]]] = {}

    def stamps(self, store: BlobStore) -> dict[str, str]:
        where = store.describe()
        with self._lock:
            seen = self._stamps.get(where)
        if seen is not None and time.monotonic() - seen[0] < self.RECHECK:
            return seen[1]
        stamps = snapshot_stamps(store)
        with self._lock:
            self._stamps[where] = (time.monotonic(), stamps)
            for key in [k for k in self._parsed if k[0] == where and stamps.get(k[1]) != k[2]]:
                del self._parsed[key]
        return stamps

    def reader(self, store: BlobStore, name: str) -> FrozenDocuments | None:
        stamp = self.stamps(store).get(name)
        if stamp is None:
            return None
        key = (store.describe(), name, stamp)
        with self._lock:
            found = self._parsed.get(key)
        if found is None:
            try:
                snapshot = load_snapshot(store, name)
            except _UNREADABLE:
                return None  # `tfmirror verify` names it (unreadable_snapshots)
            if snapshot is None:
                return None
            # One made again between the listing and this read is kept under the older
            # stamp: the next listing drops it, and it is read again then.
            found = FrozenDocuments(snapshot)
            with self._lock:
                self._parsed[key] = found
        return found


_READERS = _Readers()


def snapshot_reader(store: BlobStore, name: str) -> FrozenDocuments | None:
    """The snapshot's manifests as documents, or None if there is no such snapshot."""
    if not _NAME.match(name) or name == LIVE:
        return None
    return _READERS.reader(store, name)


def snapshot_readers(store: BlobStore) -> list[FrozenDocuments]:
    """Every snapshot's manifests (a file any of them holds is still served)."""
    found = (_READERS.reader(store, name) for name in sorted(_READERS.stamps(store)))
    return [r for r in found if r is not None]


@dataclass(frozen=True)
class Promotion:
    """What the fleet's default index and hub paths serve: a snapshot, or (snapshot "")
    the live mirror, which moves with every sync."""

    snapshot: str = ""
    at: str = ""
    actor: str = ""
    note: str = ""


def _promotion(raw: bytes | None) -> Promotion:
    if not raw:
        return Promotion()
    try:
        doc = json.loads(raw)
        return Promotion(**{k: str(doc.get(k, "")) for k in Promotion.__dataclass_fields__})
    except (ValueError, AttributeError, TypeError):
        # Unreadable: the fleet follows the live mirror; the status page shows the state.
        return Promotion()


def read_promotion(store: BlobStore) -> Promotion:
    return _promotion(store.get(PROMOTED))


def save_promotion(store: BlobStore, promotion: Promotion) -> Promotion:
    """Put `promotion` in force; returns the one it replaced."""
    before: list[Promotion] = []

    def change(raw: bytes | None) -> bytes:
        before.append(_promotion(raw))
        return json.dumps(asdict(promotion), indent=1).encode()

    update_document(store, PROMOTED, change)
    return before[-1] if before else Promotion()
