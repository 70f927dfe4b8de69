"""One pull of a site from its centre: the head (a conditional GET: unmoved, nothing else
is asked), the journal entries after the ones held (refused unless they extend them),
the state's documents that differ from the site's, each blob the site lacks (once, in
parallel, streamed and checked), then the bundle's all-or-nothing commit
(bundle.commit). Quarantine rules are always taken, the promotion unless the site
promotes on its own. A refusal changes nothing the site serves."""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bundle.commit import Arrival, brought, commit_arrival
from bundle.contents import read_manifests
from bundle.errors import BundleError
from follow.centre import Centre, Head
from follow.errors import BlobsMissing, FollowRefused
from follow.state import CentreState, differs, followed_key, sha256_of
from hub_cache.models import HUB_MANIFESTS, ModelManifest
from mirror.advisories.database import CURRENT, parse_current, take_database
from mirror.core.config.follow import FollowConfig
from mirror.core.errors import DownloadError
from mirror.core.follow_status import Pulled, read_pulled, save_pulled
from mirror.core.import_journal import IMPORTED
from mirror.core.journal import OUTER, Journal, actor_for, extends, keep_outer
from mirror.core.quarantine import QUARANTINE, adopt_rules, as_change, parse_rules
from mirror.core.runs import utcnow
from mirror.core.snapshots import (
    PROMOTED,
    Promotion,
    Snapshot,
    delete_snapshot,
    read_promotion,
    save_promotion,
    save_snapshot,
    snapshot_key,
    snapshot_names,
)
from mirror.core.storage import BlobStore
from mirror.pypi.manifest import PYPI_MANIFESTS, Manifest

PARALLEL = 4  # blobs fetched at once: the centre's link, not its disks, is the limit
JOURNAL_PAGES_MAX = 1_000_000  # entries one pull takes (a new site catching up)
SNAPSHOTS_FOLLOWED = "snapshots followed"  # the journal event naming snapshots taken


@dataclass
class Pull:
    url: str
    seq: int = -1  # the centre's head this site now holds
    unchanged: bool = False  # the head had not moved (a 304): nothing else was asked
    entries: int = 0  # centre journal entries taken
    documents: int = 0  # documents fetched
    manifests: int = 0  # manifests written
    new_blobs: int = 0
    bytes: int = 0
    snapshots: list[str] = field(default_factory=list)  # taken from the centre
    snapshots_deleted: list[str] = field(default_factory=list)  # as the centre deleted them
    snapshots_kept: list[str] = field(default_factory=list)  # deleted there, promoted here
    quarantine_changed: bool = False
    promotion: str | None = None  # the snapshot now promoted, if that changed
    advisories: dict[str, Any] | None = None  # the journal change, if the database changed

    def summary(self) -> str:
        if self.unchanged:
            return f"{self.url}: unchanged at entry {self.seq}"
        return (
            f"{self.url}: at entry {self.seq}; {self.entries} journal entries, "
            f"{self.manifests} manifests, {self.new_blobs} new blobs"
        )


def blob_sizes(manifests: Mapping[str, bytes]) -> dict[str, int | None]:
    """Each blob these manifests refer to, with the size they give it (None: none given,
    as for a wheel's METADATA file). Refuses (ValueError) a manifest that does not parse."""
    sizes: dict[str, int | None] = {}
    for key, data in manifests.items():
        if key.startswith(PYPI_MANIFESTS + "/"):
            for ref in Manifest.from_bytes(data).blobs():
                sizes[ref.sha256] = ref.size if ref.size is not None else sizes.get(ref.sha256)
        elif key.startswith(HUB_MANIFESTS + "/"):
            for sha, size, _ in ModelManifest.from_bytes(data).blobs():
                sizes[sha] = size
    return sizes


def pull(store: BlobStore, follow: FollowConfig, centre: Centre, trigger: str) -> Pull:
    done = Pull(follow.url)
    last = read_pulled(store)
    read = store.get(IMPORTED)  # the commit goes over this, or not at all
    ours = last.url == follow.url
    head = centre.head(last.etag if ours and last.etag else None, last.held(follow.url))
    if head is None:
        done.unchanged, done.seq = True, last.seq
        return done
    held = store.get(OUTER) or b""
    new = _journal(centre, head, held)
    state = centre.state()
    done.seq, done.entries = head.seq, len(new)
    policy: dict[str, bytes] = {}
    for key in differs(
        {k: v for k in state.policy if (v := store.get(k)) is not None}, state.policy
    ):
        policy[key] = centre.document(key, state.policy[key])
    if QUARANTINE in policy:
        # Always, and before any blob is fetched: a takedown must not wait on a download.
        done.quarantine_changed = _quarantine(store, policy[QUARANTINE], trigger)
    local = {k: v for k, v in read_manifests(store).items() if followed_key(k)}
    docs = {k: centre.document(k, state.manifests[k]) for k in differs(local, state.manifests)}
    snapshots = _new_snapshots(store, centre, state)
    done.documents = len(policy) + len(docs) + len(snapshots)
    database = _database(policy.get(CURRENT))
    try:
        sizes = blob_sizes(docs)
        sizes.update({sha: None for sha in database if sha not in sizes})
        for snap in snapshots:
            sizes.update(
                {k: v for k, v in blob_sizes(_encoded(snap.manifests)).items() if k not in sizes}
            )
            sizes.update({sha: sizes.get(sha) for sha in snap.blobs})
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FollowRefused(f"a manifest the centre serves does not parse ({exc})") from None
    _fetch(store, centre, sizes, done, head.seq)
    gone = (local.keys() & brought(store)) - state.manifests.keys()
    if docs or gone:
        wanted = {k: docs.get(k) or local[k] for k in state.manifests}
        _commit(store, follow, head, trigger, wanted, read, last)
        done.manifests = len(docs)
    for snap in snapshots:
        if save_snapshot(store, snap):
            done.snapshots.append(snap.name)
    if follow.follow_promotion and PROMOTED in policy:
        done.promotion = _promote(store, policy[PROMOTED])
    # After the promotion: the centre may have moved its fleet off a snapshot and then
    # deleted it, and this site, following, has just done the same.
    taken = _drop_snapshots(store, _taken_snapshots(store, last, ours), state, done)
    if database:
        done.advisories = take_database(store, policy[CURRENT], f"followed {follow.url}")
    keep_outer(store, held + b"".join(line + b"\n" for line in new))
    _record_policy(store, done, trigger)
    save_pulled(store, Pulled(follow.url, head.etag, head.seq, tuple(taken)))
    centre.report(head.seq, head.etag)
    return done


def _journal(centre: Centre, head: Head, held: bytes) -> list[bytes]:
    """The centre's entries this site lacks, refused unless they extend what it holds
    and end at the head the centre named."""
    kept = held.splitlines()
    if head.seq < len(kept) - 1:
        raise FollowRefused(
            f"the centre's journal ends at entry {head.seq}, but this site holds its entries "
            f"up to {len(kept) - 1}: it is not an extension of the journal held (rewound?)"
        )
    new = centre.entries_after(len(kept) - 1, head.seq)[: head.seq - len(kept) + 1]
    broken = extends(held, new)
    if broken is not None:
        raise FollowRefused(
            f"the centre's journal is not an extension of the one this site holds: {broken}"
        )
    every = kept + new
    if head.seq >= 0 and (len(every) - 1 != head.seq or sha256_of(every[-1]) != head.sha256):
        raise FollowRefused(
            f"the centre names entry {head.seq} as its head, but that is not where the "
            "journal it serves ends as it extends the one this site holds (not an extension "
            "of the journal held, or a head written over)"
        )
    return new


def _encoded(manifests: Mapping[str, str]) -> dict[str, bytes]:
    return {k: v.encode("utf-8", "surrogateescape") for k, v in manifests.items()}


def _new_snapshots(store: BlobStore, centre: Centre, state: CentreState) -> list[Snapshot]:
    """The centre's snapshots this site has none of (by name: they never change)."""
    out = []
    for key, sha in sorted(state.snapshots.items()):
        if store.get(key) is not None:
            continue
        data = centre.document(key, sha)
        try:
            snap = Snapshot.from_bytes(data)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise FollowRefused(f"{key} is not a snapshot document") from None
        if key != f"snapshots/{snap.name}.json":
            raise FollowRefused(f"{key} names itself {snap.name[:80]!r}")
        out.append(snap)
    return out


def kept_line(name: str) -> str:
    return (
        f"snapshot {name} was deleted at the centre but this site's fleet is on it: "
        "kept until this site promotes another"
    )


def _taken_snapshots(store: BlobStore, last: Pulled, ours: bool) -> set[str]:
    """The snapshots this site took from its centre: pulled.json's list, or, for one of
    the release before (no list), every name the site's journal says a pull took."""
    if not ours:
        return set()  # another centre's (or none yet): none of this one's
    if last.snapshots is not None:
        return set(last.snapshots)
    return {
        str(name)
        for entry in Journal(store).entries()
        for change in entry.doc.get("changes", [])
        if change.get("event") == SNAPSHOTS_FOLLOWED
        for name in change.get("snapshots", [])
    }


def _drop_snapshots(store: BlobStore, taken: set[str], state: CentreState, done: Pull) -> list[str]:
    """Delete each snapshot taken from the centre that the centre no longer has, except
    the one this site's fleet is on (a site that promotes on its own may hold it): that
    one stays, still listed as taken, and goes at the first pull after the site promotes
    another. A snapshot the site made itself is never the centre's to delete. Returns
    the names still taken."""
    promoted = read_promotion(store).snapshot
    for name in sorted(taken):
        if snapshot_key(name) in state.snapshots:
            continue
        if name == promoted:
            done.snapshots_kept.append(name)
        elif delete_snapshot(store, name):
            done.snapshots_deleted.append(name)
    held = set(snapshot_names(store))
    return sorted(((taken & held) | set(done.snapshots)) - set(done.snapshots_deleted))


def _fetch(
    store: BlobStore, centre: Centre, sizes: Mapping[str, int | None], done: Pull, seq: int
) -> None:
    """Every blob this site lacks, once, PARALLEL at a time; the first that fails refuses
    the pull (the others already stored stay, unreferenced: gc's after its grace)."""
    # Re-stamped, not only looked for: gc spares a young blob until the commit lists it.
    missing = sorted(sha for sha in sizes if not store.touch_blob(sha))
    failures: dict[str, str] = {}

    def one(sha: str) -> int:
        try:
            return centre.blob(store, sha, sizes[sha]).size
        except DownloadError as exc:
            failures[sha] = f"blob {sha}: {exc}"
            return 0

    with ThreadPoolExecutor(PARALLEL) as pool:
        moved = list(pool.map(one, missing))
    if failures:
        first = failures[min(failures)]
        raise BlobsMissing(
            f"{first} (of {len(failures)} the centre could not deliver as its "
            "manifests name them): nothing of this pull was committed",
            seq,
            len(failures),
            sum(sizes[sha] or 0 for sha in failures),
        )
    done.new_blobs, done.bytes = len(missing), sum(moved)


def _commit(
    store: BlobStore,
    follow: FollowConfig,
    head: Head,
    trigger: str,
    manifests: dict[str, bytes],
    read: bytes | None,
    last: Pulled,
) -> None:
    arrival = Arrival(
        id=f"follow-{head.seq}",
        follows=f"follow-{last.seq}" if last.url else None,  # "": no pull before
        created=utcnow(),  # the commit's own time: no bundle's ever compares to it
        what="pull",
        event="followed",
        again="the next pull tries again",
        lease="follow",
        trigger=trigger,
        # The centre's head by number and sha256: a site of this site, which keeps this
        # journal as its outer one, can match each pull to the centre's own journal.
        facts={"centre": follow.url, "centre_head": head.seq, "centre_head_sha256": head.sha256},
    )
    try:
        commit_arrival(store, arrival, manifests, read)
    except BundleError as exc:
        raise FollowRefused(str(exc)) from None


def _quarantine(store: BlobStore, data: bytes, trigger: str) -> bool:
    try:
        rules = parse_rules(data)
    except ValueError as exc:
        raise FollowRefused(f"the centre's quarantine rules are refused: {exc}") from None
    added, lifted = adopt_rules(store, rules)
    changes = [as_change(r, "quarantined") for r in added]
    changes += [as_change(r, "released") for r in lifted]
    for change in changes:
        change["followed"] = True
    Journal(store).record(changes, actor_for(trigger), "quarantine followed from the centre")
    return bool(changes)


def _promote(store: BlobStore, data: bytes) -> str:
    try:
        doc = json.loads(data)
        promotion = Promotion(**{k: str(doc.get(k, "")) for k in Promotion.__dataclass_fields__})
    except (ValueError, TypeError, AttributeError):
        raise FollowRefused("the centre's promotion is not a promotion document") from None
    save_promotion(store, promotion)
    return promotion.snapshot


def _database(data: bytes | None) -> tuple[str, ...]:
    """The blobs of the centre's advisory database, where it changed: fetched and checked
    as any blob before the document naming them is written."""
    if data is None:
        return ()
    try:
        current = parse_current(data)
    except ValueError as exc:
        raise FollowRefused(f"{CURRENT}: {exc}") from None
    return (current.archive_sha256, current.records_sha256)


def _record_policy(store: BlobStore, done: Pull, trigger: str) -> None:
    changes: list[dict[str, Any]] = []
    if done.advisories is not None:
        changes.append(done.advisories)
    if done.snapshots:
        changes.append({"event": SNAPSHOTS_FOLLOWED, "snapshots": done.snapshots})
    for name in done.snapshots_deleted:
        # The event a centre's own deletion journals: a site of this site takes it too.
        changes.append({"event": "snapshot deleted", "snapshot": name, "followed": True})
    if done.promotion is not None:
        changes.append({"event": "promotion followed", "snapshot": done.promotion or "live"})
    Journal(store).record(changes, actor_for(trigger), "followed from the centre")
