"""A centre's followers, as their pulls name them: each head request from a site carries
its name and the centre entry it holds (FOLLOWER_HEADER, FOLLOWER_SEQ_HEADER); the centre
keeps the last of each in one small document (at most KEPT followers, the longest unseen
dropped first) and shows each one's lag on its status page. A hint, not a proof: the
name is what the site says, and two followers writing at once may lose one's sighting
until its next pull."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mirror.core.config.follow import FOLLOWER_NAME
from mirror.core.journal import Journal
from mirror.core.storage import BlobStore
from mirror.core.timestamps import utc_moment

FOLLOWERS = "state/follow/followers.json"
FOLLOWER_HEADER = "X-Tfmirror-Follower"
FOLLOWER_SEQ_HEADER = "X-Tfmirror-Follower-Seq"
KEPT = 64  # followers remembered: a misbehaving client cannot grow the document
# An idle follower polling every interval rewrites its sighting at most this often (on
# S3, each write is a PUT): its "last seen" is then at most this old.
REWRITE_SECONDS = 60


@dataclass(frozen=True)
class Follower:
    name: str
    seq: int  # the centre's entry it held when it last asked (-1: none yet)
    seen: str  # when it last asked
    address: str  # where it asked from
    entries_behind: int = 0  # the centre's head minus `seq`, as of now
    lag_seconds: float = 0.0  # the age of the oldest entry it lacks; 0 when it has all


def _read(store: BlobStore) -> dict[str, dict[str, Any]]:
    raw = store.get(FOLLOWERS)
    try:
        doc = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return {str(k): dict(v) for k, v in doc.items() if isinstance(v, dict)}


def note_follower(store: BlobStore, name: str, seq: str, address: str, now: str) -> bool:
    """Remember that follower `name` asked now holding entry `seq`; False (nothing kept)
    for a name or number that is not one."""
    if not FOLLOWER_NAME.match(name) or not re.fullmatch(r"-1|\d{1,15}", seq):
        return False
    doc = _read(store)
    last = doc.get(name, {})
    if last.get("seq") == int(seq) and last.get("address") == address[:64]:
        seen = utc_moment(last.get("seen"))
        moment = utc_moment(now)
        if seen and moment and (moment - seen).total_seconds() < REWRITE_SECONDS:
            return True  # nothing new: an idle site's poll costs the store nothing
    doc[name] = {"seq": int(seq), "seen": now, "address": address[:64]}
    kept = sorted(doc.items(), key=lambda item: str(item[1].get("seen", "")), reverse=True)
    store.put(FOLLOWERS, json.dumps(dict(sorted(kept[:KEPT])), sort_keys=True).encode())
    return True


def entry_age(journal: Journal, seq: int, now: datetime) -> float:
    """Seconds since entry `seq + 1` was written: how long a holder of `seq` has lacked
    something; 0 when there is no such entry (it holds the head)."""
    after = journal.after(seq, 1)
    moment = utc_moment(after[0].doc.get("at")) if after else None
    return max(0.0, (now - moment).total_seconds()) if moment else 0.0


def read_followers(store: BlobStore, now: datetime) -> list[Follower]:
    """The followers this centre has seen, each with its lag against the head now."""
    journal = Journal(store)
    head = journal.head()
    top = head.seq if head else -1
    rows = []
    for name, doc in sorted(_read(store).items()):
        seq = int(doc.get("seq", -1))
        behind = max(0, top - seq)
        rows.append(
            Follower(
                name=name,
                seq=seq,
                seen=str(doc.get("seen", "")),
                address=str(doc.get("address", "")),
                entries_behind=behind,
                lag_seconds=entry_age(journal, seq, now) if behind else 0.0,
            )
        )
    return rows
