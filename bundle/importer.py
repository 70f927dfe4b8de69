"""Import on the inner mirror: signature, order, every byte, then the commit. Nothing
served changes until the whole bundle verified: blobs are published under their own
sha256 as they check out (unreferenced, so invisible, and gc spares young ones), and the
manifests are written only after everything they refer to is in place, behind one commit
point (bundle.commit): a kill before it leaves the store as it was, a kill after it is
finished by `recover`, so the store never stays a mix of two bundles."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bundle.commit import JOURNAL, Arrival, _imported, _write, apply_commit, commit_arrival
from bundle.contents import MANIFESTS, read_manifests, referenced
from bundle.errors import BlobsMissing, BundleError
from bundle.keys import verifies
from bundle.layout import (
    CHUNK,
    INDEX,
    JOURNAL_TAIL,
    MAX_INDEX,
    SIGNATURE,
    Index,
    Item,
    PartReader,
)
from hub_cache.errors import SignatureRefused
from hub_cache.signatures import check_brought
from mirror.advisories.database import CURRENT, Current, parse_current, take_database
from mirror.core.config import HubConfig
from mirror.core.errors import UsageError
from mirror.core.import_journal import IMPORTED
from mirror.core.journal import OUTER, Journal, actor_for, keep_outer
from mirror.core.snapshots import SNAPSHOTS, Snapshot, check_name, save_snapshot, snapshot_key
from mirror.core.storage import BlobStore

MAX_MANIFEST = 64 * 1024 * 1024
MAX_JOURNAL = 1024 * 1024 * 1024  # about 3 million entries
MAX_ADVISORIES = 64 * 1024  # advisories/current.json names two blobs and some counts


@dataclass(frozen=True)
class Imported:
    id: str
    follows: str | None
    new_blobs: int
    bytes: int
    manifests: int
    again: bool = False  # this bundle was the last one imported: nothing new to check
    outer_extends: bool = True  # the outer journal it carried holds all the one held did


def last_import(store: BlobStore) -> str | None:
    last = _imported(store).get("id")
    return None if last is None else str(last)


def needs_offer(store: BlobStore) -> bool:
    """True while devpi has not yet offered what the last import brought."""
    return _imported(store).get("offered") is False


def committing(store: BlobStore) -> bool:
    """True if a crash left a committed import's manifests half written."""
    return store.get(JOURNAL) is not None or "committing" in _imported(store)


def pending(store: BlobStore) -> bool:
    """True if a crash left an import to finish: its commit, or devpi's offer."""
    return committing(store) or needs_offer(store)


def mark_offered(store: BlobStore) -> None:
    doc = _imported(store)
    if doc:
        store.put(IMPORTED, json.dumps({**doc, "offered": True}).encode())


def recover(store: BlobStore) -> str | None:
    """Finish a commit a crash interrupted (run by the next import and by `up`); return
    its bundle id, or None if none was. Every blob the journal's manifests name is checked
    first: should one be missing all the same, BlobsMissing, nothing written, and importing
    that bundle again copies it back and commits over the journal. The release before kept
    the journal in a document of its own (JOURNAL); one a crash left there is finished
    too."""
    old = store.get(JOURNAL)
    if old is not None:  # left by the release before
        journal = json.loads(old)
        _check_blobs(store, journal)
        store.put(IMPORTED, _write(store, journal))
        store.delete(JOURNAL)
        return str(journal["id"])
    committed = store.get(IMPORTED)
    doc = json.loads(committed) if committed is not None else {}
    if committed is None or "committing" not in doc:
        return None
    _check_blobs(store, doc["committing"])
    apply_commit(store, doc, committed)
    # The journal's id: the document's own still names the import before this one.
    return str(doc["committing"]["id"])


def _check_blobs(store: BlobStore, journal: dict[str, Any]) -> None:
    """Every blob the journal's manifests name is here (re-stamped: gc's grace spares
    it until the manifests are written), or BlobsMissing."""
    written = {k: v.encode("utf-8", "surrogateescape") for k, v in journal["write"].items()}
    missing = sorted(sha for sha in referenced(written) if not store.touch_blob(sha))
    if missing:
        raise BlobsMissing(str(journal["id"]), missing)


def read_index(folder: Path, trusted: Ed25519PublicKey) -> Index:
    index_path, sig_path = folder / INDEX, folder / SIGNATURE
    for path in (index_path, sig_path):
        if not path.is_file():
            raise BundleError(f"{path} is missing: not a bundle folder")
    if index_path.stat().st_size > MAX_INDEX:
        raise BundleError(f"{index_path} is over {MAX_INDEX} bytes")
    body = index_path.read_bytes()
    if not verifies(trusted, sig_path.read_bytes()[:1024], body):
        raise BundleError(
            "the signature does not verify with the trusted key: "
            "a bundle signed by another key, or an index altered after signing"
        )
    return Index.from_bytes(body)


def last_created(store: BlobStore) -> str | None:
    """When the outer mirror made the last bundle imported here (its signed `created`;
    for an import by the release before, which kept no such field, its id's stamp)."""
    doc = _imported(store)
    if doc.get("created"):
        return str(doc["created"])
    last = doc.get("id")
    stamp = str(last)[:16] if last else ""
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).isoformat()
    except ValueError:
        return None


def _made_at(created: str) -> datetime:
    try:
        moment = datetime.fromisoformat(created)
    except ValueError:
        raise BundleError(f"the bundle's creation time {created[:40]!r} is not a time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# The inner side's own checks of what a bundle brings, before anything is committed:
# given the manifests that would change, raise BundleError to refuse the bundle.
InnerCheck = Callable[[BlobStore, Mapping[str, bytes]], None]


def signatures_here(hub: HubConfig) -> InnerCheck:
    """The inner side re-verifies each model a bundle brings whose entry here requires a
    signature, with its own trust material (hub_cache.signatures): the outer side's
    word that it verified is not taken."""

    def check(store: BlobStore, manifests: Mapping[str, bytes]) -> None:
        try:
            check_brought(store, manifests, hub)
        except SignatureRefused as exc:
            raise BundleError(
                f"a model it brings fails this side's signed_by: {exc}; nothing was imported"
            ) from None

    return check


def import_bundle(
    store: BlobStore,
    folder: Path,
    trusted: Ed25519PublicKey,
    allow_rollback: bool = False,
    inner_check: InnerCheck | None = None,
) -> Imported:
    """Check a bundle and make the inner mirror's manifests the bundle's. A bundle made
    before the last one imported (a replay, or an old full bundle) would roll models
    and closures back and drop newer ones: refused, unless `allow_rollback`.
    `inner_check` sees the manifests the import would change, their blobs stored."""
    index = read_index(folder, trusted)
    try:
        recover(store)
    except BlobsMissing as exc:
        if exc.bundle != index.id:
            raise
        # This very bundle, again: it copies what is missing and commits over the
        # journal it left.
    read = store.get(IMPORTED)  # the commit goes over this, or not at all
    last = last_import(store)
    if index.id == last:
        return Imported(index.id, index.follows, 0, 0, 0, again=True)
    newest = last_created(store)
    older = newest is not None and _made_at(index.created) <= _made_at(newest)
    if older and not allow_rollback:
        raise BundleError(
            f"bundle {index.id} was made at {index.created}, before {last} (made at "
            f"{newest}), the last imported here: importing it would roll this mirror "
            "back; import a newer one, or pass --allow-rollback to do that on purpose"
        )
    if index.follows is not None and index.follows != last:
        raise BundleError(
            f"bundle {index.id} follows {index.follows}, but this mirror last imported "
            f"{last or 'nothing'}: import the bundles in order, or a --full one"
        )
    reader = PartReader(folder, index.parts)
    manifests: dict[str, bytes] = {}
    outer_journal: bytes | None = None
    snapshots: dict[str, Snapshot] = {}
    advisories: tuple[Current, bytes] | None = None
    new_blobs = moved = 0
    try:
        for item in index.items:
            if item.kind == "manifest":
                manifests[item.name] = _read_manifest(reader, item)
            elif item.kind == "blob":
                new_blobs += _copy_blob(store, reader, item)
                moved += item.size
            elif item.kind == "journal":
                outer_journal = _read_journal(reader, item)
            elif item.kind == JOURNAL_TAIL:
                outer_journal = _continued(store, item, _read_journal(reader, item))
            elif item.kind == "snapshot":
                snap = _read_snapshot(reader, item)
                snapshots[snap.name] = snap
            elif item.kind == "advisories":
                advisories = _read_advisories(reader, item)
            else:
                raise BundleError(f"the index lists an item of unknown kind {item.kind!r}")
        reader.finish()
    finally:
        reader.close()
    # Re-stamped, not only looked for: a blob no manifest lists yet is gc's once older
    # than its grace, and gc holds another lease than an import; young, it is spared
    # until the commit below lists it (the sync does the same, mirror.pypi.sync).
    needed = referenced(manifests) | {sha for snap in snapshots.values() for sha in snap.blobs}
    if advisories is not None:
        needed |= {advisories[0].archive_sha256, advisories[0].records_sha256}
    missing = [sha for sha in needed if not store.touch_blob(sha)]
    if missing:
        raise BundleError(
            f"the bundle's manifests refer to {len(missing)} blobs this mirror lacks "
            f"(first {missing[0]}): import the bundle it follows first, or a --full one"
        )
    if inner_check is not None:
        current = read_manifests(store)
        inner_check(store, {k: v for k, v in manifests.items() if current.get(k) != v})
    # Kept as the outer side wrote it, broken, cut short or rewritten: `history --outer
    # --verify` says which (the bundle is signed: the outer side did send it). Before the
    # commit: once the commit names this bundle, an import of it again does nothing, so
    # a journal kept after it could be lost to a crash between the two.
    extends = outer_journal is None or keep_outer(store, outer_journal)
    commit_arrival(store, Arrival(index.id, index.follows, index.created), manifests, read)
    for snap in snapshots.values():
        # Create-only: one the inner side made under the same name stays as it is.
        save_snapshot(store, snap)
    if advisories is not None:
        _take_advisories(store, index.id, *advisories)
    return Imported(
        index.id, index.follows, new_blobs, moved, len(manifests), outer_extends=extends
    )


def _continued(store: BlobStore, item: Item, tail: bytes) -> bytes:
    """The outer journal held here with a bundle's tail of it after: refused unless
    this mirror holds exactly the entries the tail follows (the bundles in order), or
    holds the tail already (this bundle, again, after an import that died)."""
    if not item.name.isdigit():
        raise BundleError(f"the index lists a journal tail after {item.name[:80]!r}")
    after = int(item.name)
    held = store.get(OUTER) or b""
    lines = held.splitlines(keepends=True)
    if len(lines) == after:
        return held + tail
    if len(lines) > after and b"".join(lines[after:]) == tail:
        return held
    raise BundleError(
        f"the bundle carries the outer journal from entry {after}, but this mirror holds "
        f"{len(lines)} of its entries: import the bundles in order, or a --full one"
    )


def _read_journal(reader: PartReader, item: Item) -> bytes:
    if item.kind == "journal" and item.name != OUTER:
        raise BundleError(f"the index lists a journal named {item.name[:80]!r}")
    if item.size > MAX_JOURNAL:
        raise BundleError(f"the journal declares {item.size} bytes, over {MAX_JOURNAL}")
    data = reader.read(item.size)
    if len(data) != item.size or hashlib.sha256(data).hexdigest() != item.sha256:
        raise BundleError("the journal does not match its sha256 in the index")
    return data


def _read_advisories(reader: PartReader, item: Item) -> tuple[Current, bytes]:
    """The outer side's `advisories/current.json`: which database blobs are in force."""
    if item.name != CURRENT or item.size > MAX_ADVISORIES:
        raise BundleError(f"the index lists an advisory database {item.name[:80]!r} it cannot be")
    data = reader.read(item.size)
    if len(data) != item.size or hashlib.sha256(data).hexdigest() != item.sha256:
        raise BundleError("the advisory database does not match its sha256 in the index")
    try:
        current = parse_current(data)
    except ValueError:
        raise BundleError("the advisory database's document is not one") from None
    return current, data


def _take_advisories(store: BlobStore, bundle_id: str, current: Current, data: bytes) -> None:
    """The outer side's database becomes this side's (its blobs are stored and checked
    by then), journaled as the outer side's sync journals a new one."""
    change = take_database(store, data, f"bundle {bundle_id}")
    if change is not None:
        Journal(store).record([change], actor_for("manual"), f"bundle {bundle_id} imported")


def _read_snapshot(reader: PartReader, item: Item) -> Snapshot:
    stem = item.name.removeprefix(SNAPSHOTS + "/").removesuffix(".json")
    try:
        if item.name != snapshot_key(check_name(stem)):
            raise UsageError("not a snapshot's key")
    except UsageError:
        raise BundleError(f"the index lists a snapshot named {item.name[:80]!r}") from None
    if item.size > MAX_MANIFEST:
        raise BundleError(f"snapshot {stem} declares {item.size} bytes, over the limit")
    data = reader.read(item.size)
    if len(data) != item.size or hashlib.sha256(data).hexdigest() != item.sha256:
        raise BundleError(f"snapshot {stem} does not match its sha256 in the index")
    try:
        snap = Snapshot.from_bytes(data)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BundleError(f"snapshot {stem} is not a snapshot document") from None
    if snap.name != stem:
        raise BundleError(f"snapshot {stem} names itself {snap.name[:80]!r}")
    return snap


def _read_manifest(reader: PartReader, item: Item) -> bytes:
    if not item.name.startswith(MANIFESTS) or ".." in item.name.split("/"):
        raise BundleError(f"the index lists a manifest outside manifests/: {item.name[:200]!r}")
    if item.size > MAX_MANIFEST:
        raise BundleError(f"manifest {item.name} declares {item.size} bytes, over the limit")
    data = reader.read(item.size)
    if len(data) != item.size or hashlib.sha256(data).hexdigest() != item.sha256:
        raise BundleError(f"manifest {item.name} does not match its sha256 in the index")
    return data


def _copy_blob(store: BlobStore, reader: PartReader, item: Item) -> int:
    """Copy one blob, verified; 1 if it was new here. Known blobs are read past, still
    hashed as part of their part."""
    if item.name != item.sha256:
        raise BundleError(f"blob item {item.name[:80]!r} is not named by its sha256")
    known = store.touch_blob(item.sha256)  # re-stamped: see import_bundle
    # Hashed here once: the writer publishes under the sha256 this digest proved.
    sink = None if known else store.new_blob()
    digest = hashlib.sha256()
    left = item.size
    try:
        while left:
            chunk = reader.read(min(CHUNK, left))
            if not chunk:
                raise BundleError(f"the parts end inside blob {item.sha256}")
            digest.update(chunk)
            if sink is not None:
                sink.write(chunk)
            left -= len(chunk)
        if digest.hexdigest() != item.sha256:
            raise BundleError(f"blob {item.sha256} arrived as other bytes ({digest.hexdigest()})")
        if sink is not None:
            sink.publish(item.sha256)
    except BaseException:
        if sink is not None:
            sink.discard()
        raise
    return 0 if known else 1
