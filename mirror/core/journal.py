"""The journal: every change to what the mirror offers, append-only and hash-chained, for
the auditor's questions run records cannot answer (what was the fleet offered on a date,
who changed it and why, was the record edited since). An entry is one commit's changes
(a sync's files added and removed, a model replaced, a bundle imported, gc's deletions)
with its time, actor and reason, and names the one before it by the sha256 of its bytes:
changing or inserting an entry breaks every link after it, and removing one leaves a gap
(`verify` names both)."""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mirror.core.errors import StoreError
from mirror.core.runs import utcnow
from mirror.core.storage import BlobStore
from mirror.core.timestamps import utc_moment

# In the store (documents only, on disk or S3):
# - ENTRIES/<seq>.json: one entry, canonical JSON, written create-only, so of two writers
#   that read the same tip one wins and the other reads the new tip and tries again: the
#   chain never forks.
# - SEGMENTS/<first>.jsonl: every SEGMENT entries sealed into one document (the entries'
#   exact bytes, one a line), so `history` over 100,000 entries reads 100 documents.
# - HEAD: the last sequence number written, a hint (the entries are the truth).
ENTRIES = "journal/entries"
SEGMENTS = "journal/segments"
HEAD = "journal/head.json"
SEGMENT = 1000
GENESIS = "0" * 64  # what the first entry names as the one before it
TRIES = 200


def _key(seq: int) -> str:
    return f"{ENTRIES}/{seq:012d}.json"


def _segment_key(first: int) -> str:
    return f"{SEGMENTS}/{first:012d}.jsonl"


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def actor_for(trigger: str) -> str:
    """Who made a change: the scheduler, or the user at the host that ran the command."""
    host = socket.gethostname()
    if trigger in ("schedule", "startup"):
        return f"scheduler@{host}"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{host}" if trigger == "manual" else f"{user}@{host} ({trigger})"


@dataclass(frozen=True)
class Entry:
    seq: int
    sha256: str  # of `raw`: what the next entry names
    raw: bytes

    @property
    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.raw)
        return doc


def touches(
    doc: Mapping[str, Any], project: str | None, model: str | None, since: str | None
) -> bool:
    """The entry changed `project` or `model` (either, where given) at or after `since`."""
    if since is not None and str(doc.get("at", "")) < since:
        return False
    changes = doc.get("changes")
    listed = changes if isinstance(changes, list) else []
    if project is not None and not any(c.get("project") == project for c in listed):
        return False
    return model is None or any(c.get("model") == model for c in listed)


@dataclass(frozen=True)
class Broken:
    """The first entry that does not match the chain, and how."""

    seq: int
    why: str

    def __str__(self) -> str:
        return f"journal entry {self.seq}: {self.why}"


class Journal:
    def __init__(self, store: BlobStore) -> None:
        self.store = store

    # -- writing ----------------------------------------------------------------------
    def record(self, changes: list[dict[str, Any]], actor: str, reason: str = "") -> Entry | None:
        """Append one entry holding `changes` (each a dict with an "event"); nothing
        when there are none. Returns the entry written."""
        if not changes:
            return None
        for _ in range(TRIES):
            seq, prev = self._tip()
            doc = {
                "seq": seq,
                "prev": prev,
                "at": utcnow(),
                "actor": actor,
                "reason": reason,
                "changes": changes,
            }
            raw = _canonical(doc)
            if self.store.put_if(_key(seq), raw, None):  # create-only: one entry per seq
                entry = Entry(seq, hashlib.sha256(raw).hexdigest(), raw)
                self._after(entry)
                return entry
        raise StoreError(f"journal: {TRIES} writers in a row appended first; try again")

    def _tip(self) -> tuple[int, str]:
        """The next sequence number and the sha256 of the entry before it."""
        seq = self._known_end()
        while self.store.get(_key(seq)) is not None:
            seq += 1
        if seq == 0:
            return 0, GENESIS
        before = self._raw(seq - 1)
        if before is None:
            raise StoreError(f"journal: entry {seq - 1} is missing")
        return seq, hashlib.sha256(before).hexdigest()

    def _known_end(self) -> int:
        """A sequence number no later than the next free one: the head's hint, or the
        end of the last sealed segment."""
        head = self._head()
        hint = head[0] + 1 if head is not None else 0
        sealed = self._segments()
        return max(hint, sealed[-1] + SEGMENT if sealed else 0)

    def _head(self) -> tuple[int, str | None] | None:
        """The head's record: the newest sequence number written, and that entry's sha256."""
        raw = self.store.get(HEAD)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            sha = doc.get("sha256")
            return int(doc["seq"]), None if sha is None else str(sha)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def _after(self, entry: Entry) -> None:
        # The newest entry's hash, so an edit of the last entry (which no link follows
        # yet) is seen too.
        self.store.put(HEAD, _canonical({"seq": entry.seq, "sha256": entry.sha256}))
        if entry.seq % SEGMENT == SEGMENT - 1:
            self._seal(entry.seq - SEGMENT + 1)

    def _seal(self, first: int) -> None:
        lines = []
        for seq in range(first, first + SEGMENT):
            raw = self.store.get(_key(seq))
            if raw is None:
                return  # cannot happen: entries are never deleted; the tail reads them
            lines.append(raw)
        self.store.put_if(_segment_key(first), b"\n".join(lines) + b"\n", None)

    def _stored(self) -> list[int]:
        """The sequence numbers of every entry document in the store, ascending."""
        seqs = []
        for key in self.store.list(ENTRIES):
            name = key.rsplit("/", 1)[-1]
            if name.endswith(".json") and name[:-5].isdigit():
                seqs.append(int(name[:-5]))
        return sorted(seqs)

    def _segments(self) -> list[int]:
        firsts = []
        for key in self.store.list(SEGMENTS):
            name = key.rsplit("/", 1)[-1]
            if name.endswith(".jsonl") and name[:-6].isdigit():
                firsts.append(int(name[:-6]))
        return sorted(firsts)

    def _raw(self, seq: int) -> bytes | None:
        raw = self.store.get(_key(seq))
        if raw is not None:
            return raw
        first = seq - seq % SEGMENT
        segment = self.store.get(_segment_key(first))
        if segment is None:
            return None
        lines = segment.splitlines()
        return lines[seq - first] if seq - first < len(lines) else None

    # -- reading ----------------------------------------------------------------------
    def head(self) -> Entry | None:
        """The newest entry, or None for an empty journal (what a follower watches)."""
        end, _ = self._tip()
        raw = self._raw(end - 1) if end else None
        return None if raw is None else Entry(end - 1, hashlib.sha256(raw).hexdigest(), raw)

    def after(self, seq: int, count: int) -> list[Entry]:
        """Up to `count` entries after entry `seq` (-1: from the first), oldest first:
        a page of what a follower lacks, read by number, not by walking the journal."""
        out = []
        for n in range(seq + 1, seq + 1 + count):
            raw = self._raw(n)
            if raw is None:
                break
            out.append(Entry(n, hashlib.sha256(raw).hexdigest(), raw))
        return out

    def entries(self) -> Iterator[Entry]:
        """Every entry, oldest first: the sealed segments, then the entries after them."""
        seq = 0
        for first in self._segments():
            if first != seq:
                break  # a gap: the rest is read entry by entry (and verify says so)
            segment = self.store.get(_segment_key(first)) or b""
            for raw in segment.splitlines():
                yield Entry(seq, hashlib.sha256(raw).hexdigest(), raw)
                seq += 1
        while (tail := self.store.get(_key(seq))) is not None:
            yield Entry(seq, hashlib.sha256(tail).hexdigest(), tail)
            seq += 1

    def recent(self, count: int) -> list[dict[str, Any]]:
        """The newest `count` entries, newest first, read back from the tip (a page
        shows them however long the journal is)."""
        end, _ = self._tip()
        out = []
        for seq in range(end - 1, max(-1, end - 1 - count), -1):
            raw = self._raw(seq)
            if raw is None:
                break
            out.append(json.loads(raw))
        return out

    def history(
        self,
        project: str | None = None,
        model: str | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """The entries that touch `project` or `model` since `since`, newest first."""
        if limit is not None and project is None and model is None and since is None:
            return self.recent(limit)  # read back from the tip, not the whole journal
        # Entries are canonical JSON: a change naming the project holds these exact
        # bytes, so most entries are passed over without being parsed.
        needles = [
            _canonical({k: v})[1:-1] for k, v in (("project", project), ("model", model)) if v
        ]
        docs = (e.doc for e in self.entries() if all(n in e.raw for n in needles))
        found = [doc for doc in docs if touches(doc, project, model, since)]
        found.reverse()
        return found[:limit] if limit is not None else found

    def verify(self) -> Broken | None:
        """Re-walk the chain: each entry parses, has its place's number, and names the
        one before by the sha256 of its bytes; a sealed entry's own document holds the
        same bytes as its segment; no entry is missing below one written later, or
        below the head's record. The first that does not match, or None."""
        # What was written before the walk starts, so that entries a writer appends
        # meanwhile are not taken for ones the walk failed to reach.
        head = self._head()
        stored, sealed = self._stored(), self._segments()
        prev = GENESIS
        last: Entry | None = None
        for entry in self.entries():
            broken = _link(entry.seq, entry.raw, prev)
            if broken is not None:
                return broken
            own = self.store.get(_key(entry.seq))
            if own is not None and own != entry.raw:
                return Broken(entry.seq, "differs from its sealed segment")
            prev = entry.sha256
            last = entry
        end = last.seq + 1 if last is not None else 0  # the first the walk did not find
        # A removed entry breaks no link: the walk just ends there. What was written
        # after it (entries, sealed segments, the head's record) says it is missing.
        after = [seq for seq in stored if seq > end]
        for first in (first for first in sealed if first + SEGMENT > end):
            after += [max(first, end + 1), first + SEGMENT - 1]
        if after:
            return Broken(end, f"is missing; entries {min(after)} to {max(after)} follow it")
        if head is not None and head[0] >= end:
            return Broken(end, f"is missing; the head's record names entry {head[0]} as written")
        if head is None or last is None or head[0] != last.seq:
            return None
        # The newest entry, which no link follows yet. (A head written by a release
        # that kept no hash names no sha256.)
        if head[1] not in (None, last.sha256):
            return Broken(last.seq, "differs from what was written (the head's record)")
        return None


OUTER = "journal/outer.jsonl"  # an inner mirror's copy of the outer one's journal
# The newest outer entry a bundle carried here, {"seq", "sha256"}: each later outer
# journal must still hold it (the chain then proves every entry before it the same).
OUTER_HELD = "journal/outer-held.json"


def as_lines(journal: Journal) -> bytes:
    """The whole journal as one document, an entry's exact bytes per line: what a
    bundle carries so that the inner side can verify the outer's history."""
    return b"".join(entry.raw + b"\n" for entry in journal.entries())


def _link(seq: int, raw: bytes, prev: str) -> Broken | None:
    """Entry `seq` (its exact bytes) as the chain requires it: readable, numbered for
    its place, naming the entry before by `prev`, that entry's sha256."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return Broken(seq, "not readable JSON")
    if not isinstance(doc, dict) or doc.get("seq") != seq:
        number = doc.get("seq") if isinstance(doc, dict) else None
        return Broken(seq, f"holds sequence number {number!r}")
    if doc.get("prev") != prev:
        return Broken(
            seq, f"does not name entry {seq - 1} as it is now (that entry was changed or removed)"
        )
    return None


def extends(held: bytes, lines: list[bytes]) -> Broken | None:
    """`lines` continue the journal `held` (as lines): numbered on from its end, the
    first naming its last entry by sha256, each the one before. The first that does not,
    or None. Only the new entries are walked: the held ones were when they came."""
    kept = held.splitlines()
    prev = hashlib.sha256(kept[-1]).hexdigest() if kept else GENESIS
    for seq, raw in enumerate(lines, start=len(kept)):
        broken = _link(seq, raw, prev)
        if broken is not None:
            return broken
        prev = hashlib.sha256(raw).hexdigest()
    return None


def verify_lines(data: bytes) -> tuple[int, Broken | None]:
    """The entries in a journal carried as lines, and the first that does not match."""
    prev = GENESIS
    lines = data.splitlines()
    for seq, raw in enumerate(lines):
        broken = _link(seq, raw, prev)
        if broken is not None:
            return len(lines), broken
        prev = hashlib.sha256(raw).hexdigest()
    return len(lines), None


def _outer_held(store: BlobStore) -> tuple[int, str] | None:
    """The newest outer entry held here: its record, else (kept by a release without
    one) the last line of the outer journal kept."""
    raw = store.get(OUTER_HELD)
    if raw is not None:
        try:
            doc = json.loads(raw)
            return int(doc["seq"]), str(doc["sha256"])
        except (ValueError, KeyError, TypeError):
            pass  # unreadable: then from the journal kept, as before there was one
    lines = (store.get(OUTER) or b"").splitlines()
    return (len(lines) - 1, hashlib.sha256(lines[-1]).hexdigest()) if lines else None


def _holds(lines: list[bytes], held: tuple[int, str]) -> bool:
    seq, sha256 = held
    return seq < len(lines) and hashlib.sha256(lines[seq]).hexdigest() == sha256


def keep_outer(store: BlobStore, data: bytes) -> bool:
    """Keep the outer journal a bundle carried, whole and as the outer side wrote it,
    broken or not (`verify_outer` says whether it holds together). False if it does not
    extend the one held here (entries cut off or rewritten since): the newest entry held
    is remembered, so `verify_outer` names that for as long as it is not held again."""
    held = _outer_held(store)
    lines = data.splitlines()
    if held is not None and not _holds(lines, held):
        # Recorded before the journal that held it is replaced.
        store.put(OUTER_HELD, _canonical({"seq": held[0], "sha256": held[1]}))
        store.put(OUTER, data)
        return False
    store.put(OUTER, data)  # then the record: never one that the journal kept lacks
    if lines:
        newest = {"seq": len(lines) - 1, "sha256": hashlib.sha256(lines[-1]).hexdigest()}
        store.put(OUTER_HELD, _canonical(newest))
    return True


def verify_outer(store: BlobStore) -> tuple[int, Broken | None] | None:
    """The outer journal kept here: its entries, and the first that breaks its chain or
    is not the entry an earlier bundle carried (removed, or written over). None if no
    bundle carried one."""
    data = store.get(OUTER)
    if data is None:
        return None
    count, broken = verify_lines(data)
    held = _outer_held(store)
    if broken is not None or held is None or _holds(data.splitlines(), held):
        return count, broken
    seq = held[0]
    if seq >= count:
        why = f"is missing; a bundle imported earlier carried entries up to {seq}"
        return count, Broken(count, why)
    why = "differs from the one a bundle imported earlier carried (rewritten since)"
    return count, Broken(seq, why)


def read_lines(data: bytes) -> list[dict[str, Any]]:
    out = []
    for raw in data.splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return out


def parse_since(text: str) -> str:
    """A --since value (a date or an ISO 8601 time) as the journal's own form."""
    moment = utc_moment(text)
    if moment is None:
        raise ValueError(f"{text!r} is no time")
    return moment.strftime("%Y-%m-%dT%H:%M:%S")
