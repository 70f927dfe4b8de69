"""A site's view of its centre, kept after every pull (state/follow/status.json): whom
it follows, the centre's head as last seen, the last pull that succeeded, and since when
pulls fail (the centre unreachable, or a pull refused midway, with the blobs it still
lacked). The status page, /api/status and /metrics read it; `up`'s follow loop spaces
its retries by `retry_delay`.

The centre entry the site holds has one record, what the last whole pull wrote
(state/follow/pulled.json, `Pulled`): the status derives its `held_seq` from it when
read, so the two can never disagree (a status.json of the release before, which kept
its own copy, reads the same: that copy is ignored)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from typing import Any

from mirror.core.sizes import human_bytes
from mirror.core.storage import BlobStore
from mirror.core.timestamps import utc_moment

FOLLOW_STATUS = "state/follow/status.json"
PULLED = "state/follow/pulled.json"  # the head the last whole pull brought, and its ETag
FIRST_RETRY = 2.0  # seconds after the first failed pull; doubling after each further one


def retry_delay(failures: int, interval: float, cap: float) -> float:
    """Seconds until the next pull: `interval` after a success (failures == 0), else
    FIRST_RETRY doubled per consecutive failure, never over `cap`."""
    if failures <= 0:
        return interval
    return min(cap, FIRST_RETRY * 2.0 ** min(failures - 1, 60))


@dataclass(frozen=True)
class Pulled:
    """What the last whole pull brought, written as its last step: from which centre,
    the head's ETag (the next pull's conditional GET), the centre entry the site now
    holds, and the snapshots taken from that centre (the only ones a deletion at the
    centre takes away; None: a pulled.json of the release before, which kept no list)."""

    url: str = ""
    etag: str = ""
    seq: int = -1
    snapshots: tuple[str, ...] | None = None

    def held(self, url: str) -> int:
        """The centre entry this site holds of `url` (-1: none yet, or another centre's)."""
        return self.seq if self.url == url else -1


def read_pulled(store: BlobStore) -> Pulled:
    raw = store.get(PULLED)
    try:
        doc = json.loads(raw) if raw else {}
        names = doc.get("snapshots")
        return Pulled(
            url=str(doc.get("url", "")),
            etag=str(doc.get("etag") or ""),
            seq=int(doc.get("seq", -1)),
            snapshots=None if names is None else tuple(str(n) for n in names),
        )
    except (ValueError, TypeError, AttributeError):
        return Pulled()


def save_pulled(store: BlobStore, pulled: Pulled) -> None:
    doc: dict[str, Any] = {"url": pulled.url, "etag": pulled.etag, "seq": pulled.seq}
    if pulled.snapshots is not None:
        doc["snapshots"] = sorted(pulled.snapshots)
    store.put(PULLED, json.dumps(doc).encode())


@dataclass(frozen=True)
class SiteFollow:
    url: str  # the centre, as configured (a base URL: never credentials)
    centre_seq: int = -1  # the centre's head as last seen
    last_success: str = ""  # the end of the last pull that left the site at that head
    last_attempt: str = ""
    failing_since: str = ""  # the first failed pull after the last success ("": none)
    unreachable: bool = False  # that failure: the centre did not answer at all
    error: str = ""  # the last failure's one line
    failures: int = 0  # failed pulls in a row
    missing_blobs: int = 0  # blobs a pull that failed midway still lacked
    missing_bytes: int = 0
    # Not stored: the entry held is pulled.json's (read_follow_status), the rest is as
    # of the reading (`at`).
    held_seq: int = -1  # the centre's entry this site holds and serves up to
    entries_behind: int = 0
    lag_seconds: float = 0.0
    notice: str = ""

    def at(self, now: datetime) -> SiteFollow:
        """With the lag as of `now`: the entries between the centre's head last seen and
        the one held, and, while pulls fail or the site is behind, the seconds since the
        last pull that succeeded (what the site serves is at least that old); 0 while
        the last pull succeeded."""
        behind = max(0, self.centre_seq - self.held_seq)
        seconds = 0.0
        if self.failing_since or behind:
            since = utc_moment(self.last_success) or utc_moment(self.failing_since)
            seconds = max(0.0, (now - since).total_seconds()) if since else 0.0
        return replace(self, entries_behind=behind, lag_seconds=seconds, notice=self._notice())

    def _notice(self) -> str:
        """One line for the page while pulls fail; "" while they succeed."""
        if not self.failing_since:
            return ""
        what = (
            f"centre unreachable since {self.failing_since}"
            if self.unreachable
            else f"pulls failing since {self.failing_since} ({self.error})"
        )
        served = (
            f"serving what was pulled at {self.last_success}"
            if self.last_success
            else "nothing pulled yet"
        )
        missing = (
            f"; {self.missing_blobs} blobs ({human_bytes(self.missing_bytes)}) not fetched yet"
            if self.missing_blobs
            else ""
        )
        return f"following {self.url}: {what}, {served}{missing}"


# Derived when read, never taken from status.json (the release before wrote held_seq).
_DERIVED = ("held_seq", "entries_behind", "lag_seconds", "notice")


def read_follow_status(store: BlobStore) -> SiteFollow | None:
    raw = store.get(FOLLOW_STATUS)
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    kept = {f.name for f in fields(SiteFollow)} - set(_DERIVED)
    status = SiteFollow(**{k: v for k, v in doc.items() if k in kept})
    return replace(status, held_seq=read_pulled(store).held(status.url))


def save_follow_status(store: BlobStore, status: SiteFollow) -> None:
    doc: dict[str, Any] = asdict(status)
    for derived in _DERIVED:
        doc.pop(derived)
    store.put(FOLLOW_STATUS, json.dumps(doc, sort_keys=True).encode())


def pulled(store: BlobStore, url: str, centre_seq: int, when: str) -> None:
    """After a pull that succeeded: the site holds the centre's head, `centre_seq`."""
    status = SiteFollow(url, centre_seq=centre_seq, last_success=when, last_attempt=when)
    save_follow_status(store, status)


def failed(
    store: BlobStore,
    url: str,
    when: str,
    error: str,
    *,
    unreachable: bool,
    centre_seq: int | None = None,
    missing: tuple[int, int] = (0, 0),
) -> None:
    """After a pull that failed: what the site held stays; the failure is counted."""
    last = read_follow_status(store)
    if last is None or last.url != url:
        last = SiteFollow(url, centre_seq=read_pulled(store).held(url))
    status = replace(
        last,
        last_attempt=when,
        failing_since=last.failing_since or when,
        unreachable=unreachable,
        error=error,
        failures=last.failures + 1,
        centre_seq=last.centre_seq if centre_seq is None else centre_seq,
        missing_blobs=missing[0],
        missing_bytes=missing[1],
    )
    save_follow_status(store, status)
