"""A site's view of its centre, kept after every pull (state/follow/status.json): whom
it follows, the centre's head as last seen and the entry the site holds, the last pull
that succeeded, and since when pulls fail (the centre unreachable, or a pull refused
midway, with the blobs it still lacked). The status page, /api/status and /metrics read
it; `up`'s follow loop spaces its retries by `retry_delay`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from typing import Any

from mirror.core.sizes import human_bytes
from mirror.core.storage import BlobStore
from mirror.core.timestamps import utc_moment

FOLLOW_STATUS = "state/follow/status.json"
FIRST_RETRY = 2.0  # seconds after the first failed pull; doubling after each further one


def retry_delay(failures: int, interval: float, cap: float) -> float:
    """Seconds until the next pull: `interval` after a success (failures == 0), else
    FIRST_RETRY doubled per consecutive failure, never over `cap`."""
    if failures <= 0:
        return interval
    return min(cap, FIRST_RETRY * 2.0 ** min(failures - 1, 60))


@dataclass(frozen=True)
class SiteFollow:
    url: str  # the centre, as configured (a base URL: never credentials)
    held_seq: int = -1  # the centre's entry this site holds and serves up to
    centre_seq: int = -1  # the centre's head as last seen
    last_success: str = ""  # the end of the last pull that left the site at that head
    last_attempt: str = ""
    failing_since: str = ""  # the first failed pull after the last success ("": none)
    unreachable: bool = False  # that failure: the centre did not answer at all
    error: str = ""  # the last failure's one line
    failures: int = 0  # failed pulls in a row
    missing_blobs: int = 0  # blobs a pull that failed midway still lacked
    missing_bytes: int = 0
    # As of the reading (`at`), not stored: see `at`.
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


def read_follow_status(store: BlobStore) -> SiteFollow | None:
    raw = store.get(FOLLOW_STATUS)
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    known = {f.name for f in fields(SiteFollow)}
    return SiteFollow(**{k: v for k, v in doc.items() if k in known})


def save_follow_status(store: BlobStore, status: SiteFollow) -> None:
    doc: dict[str, Any] = asdict(status)
    for computed in ("entries_behind", "lag_seconds", "notice"):
        doc.pop(computed)
    store.put(FOLLOW_STATUS, json.dumps(doc, sort_keys=True).encode())


def pulled(store: BlobStore, url: str, held_seq: int, when: str) -> SiteFollow:
    """After a pull that succeeded: the site holds the centre's head."""
    status = SiteFollow(
        url, held_seq=held_seq, centre_seq=held_seq, last_success=when, last_attempt=when
    )
    save_follow_status(store, status)
    return status


def failed(
    store: BlobStore,
    url: str,
    when: str,
    error: str,
    *,
    held_seq: int,
    unreachable: bool,
    centre_seq: int | None = None,
    missing: tuple[int, int] = (0, 0),
) -> SiteFollow:
    """After a pull that failed: what the site held stays; the failure is counted."""
    last = read_follow_status(store)
    if last is None or last.url != url:
        last = SiteFollow(url, held_seq=held_seq, centre_seq=held_seq)
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
    return status
