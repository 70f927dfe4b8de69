"""Run records: one JSON document per job run, under runs/<job>/, plus a small index.
Reading 10,000 records to draw a status page is too slow, so each finished run also
rewrites small documents beside them (`latest.json`, `last-success.json`, `totals.json`,
`recent.json`), and the page and /metrics read only those. A job that raised instead of
finishing is recorded as a failed run too (record_crash); old records beyond the
retention count are pruned."""

from __future__ import annotations

import json
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from mirror.core.config import Config
from mirror.core.errors import JobCrashed, StoreError
from mirror.core.lease import died_here, still_held
from mirror.core.redact import bounded, redact_text, redact_url, shown
from mirror.core.storage import BlobStore, update_document

RUNS = "runs"
# A job as every package registers it and the runner runs it: (config, store, trigger)
# -> whether it went well. Its run record is its own to write.
JobFn = Callable[[Config, BlobStore, str], bool]
# The last verify's full result (its run record has the counts): written by verify,
# read by the status page, which does not import verify.
VERIFY_STATE = "state/verify.json"
# Bundle exports and imports are runs too, started by hand with a folder: the page shows
# them beside the scheduled jobs.
BUNDLE_JOB = "bundle"
NAME_LIMIT = 300
LOG_LIMIT = 100_000
INDEX_FILES = ("latest.json", "last-success.json", "totals.json", "recent.json", "running.json")
RECENT = 30  # runs of each job the status page draws


def _index_key(job: str, name: str) -> str:
    return f"{RUNS}/{job}/{name}"


def utcnow() -> str:
    """Now, as the store's documents write it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Failure:
    """One thing a job could not do: the one record type every run record, report and
    page uses for it."""

    name: str  # a filename, a target id, or "devpi"
    url: str
    reason: str

    def __post_init__(self) -> None:
        # The one place every failure passes: what pages, JSON and records show is
        # free of credentials and bounded, however long the upstream's message was.
        self.name = bounded(self.name, NAME_LIMIT)
        self.url = bounded(redact_url(self.url), NAME_LIMIT)
        self.reason = shown(self.reason)

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}" + (f" ({self.url})" if self.url else "")

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "url": self.url, "reason": self.reason}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Failure:
        return cls(str(doc.get("name", "")), str(doc.get("url", "")), str(doc.get("reason", "")))


class Outcome(StrEnum):
    """How a job run ended (a str: run records and JSON carry the plain value)."""

    OK = "ok"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped (SIGINT, SIGTERM) before it finished: no failure


# Runs begun in this process and not finished yet: a stop finishes them as interrupted,
# with their own id, start and phase (see `interrupt_runs`).
_open: list[RunRecord] = []
_open_lock = threading.Lock()


@dataclass(eq=False)
class RunRecord:
    job: str
    trigger: str
    started: datetime
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    # Where the run is now ("resolve", "devpi pull"...): what an interrupted record names.
    phase: str = ""
    # One record per run: the first `finish` (the job's own or a stop's) is the one
    # written; the other, arriving after, writes nothing.
    _doc: dict[str, Any] | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        with _open_lock:
            _open.append(self)

    @classmethod
    def begin(cls, job: str, trigger: str) -> RunRecord:
        return cls(job, trigger, datetime.now(UTC))

    @property
    def key(self) -> str:
        return f"{RUNS}/{self.job}/{self.started.strftime('%Y%m%dT%H%M%S.%fZ')}-{self.id}.json"

    def finish(
        self,
        store: BlobStore,
        ok: bool,
        counts: dict[str, int],
        bytes_moved: int,
        errors: list[dict[str, str]],
        extra: dict[str, Any] | None = None,
        outcome: Outcome | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            if self._doc is None:
                self._doc = self._write(store, ok, counts, bytes_moved, errors, extra, outcome)
                with _open_lock:
                    if self in _open:  # a crash's record replaced it already
                        _open.remove(self)
            return self._doc

    def _write(
        self,
        store: BlobStore,
        ok: bool,
        counts: dict[str, int],
        bytes_moved: int,
        errors: list[dict[str, str]],
        extra: dict[str, Any] | None,
        outcome: Outcome | None,
    ) -> dict[str, Any]:
        outcome = outcome or (Outcome.OK if ok else Outcome.FAILED)
        ok = outcome is Outcome.OK
        ended = datetime.now(UTC)
        # A run whose lease went to another replica (it was paused past it) keeps its
        # own record, but the index is the current holder's: its stale view would
        # replace the page's latest run, history and totals.
        holds = still_held(self.job)
        doc = {
            "job": self.job,
            "id": self.id,
            "trigger": self.trigger,
            "start": self.started.isoformat(),
            "end": ended.isoformat(),
            "seconds": round((ended - self.started).total_seconds(), 3),
            "outcome": outcome,
            "counts": counts,
            "bytes": bytes_moved,
            "errors": errors,
            **(extra or {}),
            **({} if holds else {"lease_lost": True}),
        }
        data = json.dumps(doc, indent=1).encode()
        store.put(self.key, data)
        if not holds:
            return doc
        store.put(_index_key(self.job, "latest.json"), data)
        if ok:
            store.put(_index_key(self.job, "last-success.json"), data)

        def count(raw: bytes | None) -> bytes:
            totals = json.loads(raw) if raw else {"runs": 0, "failed": 0, "bytes": 0}
            totals["runs"] += 1
            totals["failed"] += outcome is Outcome.FAILED
            if outcome is Outcome.INTERRUPTED:
                totals["interrupted"] = totals.get("interrupted", 0) + 1
            totals["bytes"] += bytes_moved
            return json.dumps(totals).encode()

        # Runs of one job hold its lease, but the count does not depend on that: the
        # totals are a read-modify-write, so it is a conditional one.
        update_document(store, _index_key(self.job, "totals.json"), count)
        point = {"start": doc["start"], "seconds": doc["seconds"], "bytes": bytes_moved, "ok": ok}

        def remember(raw: bytes | None) -> bytes:
            recent = json.loads(raw) if raw else []
            return json.dumps([*recent, point][-RECENT:]).encode()

        # The page's history chart, without reading the run records themselves.
        update_document(store, _index_key(self.job, "recent.json"), remember)
        return doc

    def interrupt(self, store: BlobStore, stopped_by: str) -> None:
        """Finish the run as interrupted, unless it is finishing (or has finished) by
        itself: that record, written by the job, stands. No error list: what failed
        after the stop (devpi's pulls cut short) is the stop, not a fault to retry."""
        if self._lock.locked() or self._doc is not None:
            return
        during = f" during {self.phase}" if self.phase else ""
        reason = f"interrupted by {stopped_by}{during}; nothing half-done was published"
        error = Failure(self.job, "", reason).as_json()
        self.finish(store, False, {}, 0, [error], outcome=Outcome.INTERRUPTED)


def interrupt_runs(store: BlobStore, job: str, since: datetime, stopped_by: str) -> int:
    """Finish as interrupted every run of `job` this process began at `since` or later
    and has not finished (its thread dies with the process, or gave up on a signal);
    returns how many it found (one finishing by itself just now is left to finish)."""
    with _open_lock:
        runs = [r for r in _open if r.job == job and r.started >= since]
    for run in runs:
        run.interrupt(store, stopped_by)
    return len(runs)


def record_crash(store: BlobStore, job: str, trigger: str, exc: BaseException) -> JobCrashed:
    """A failed run record for a job that raised instead of finishing its own: the page,
    /api/status and metrics then show the failure instead of the run before it. The
    reason is bounded; the whole traceback, without credentials, is the record's log."""
    reason = f"{type(exc).__name__}: {exc}"
    trace = "".join(traceback.format_exception(exc))
    with _open_lock:  # the record the job began is this one: a stop must not finish it
        begun = [r for r in _open if r.job == job]
        for run in begun:
            _open.remove(run)
    try:
        RunRecord.begin(job, trigger).finish(
            store,
            ok=False,
            counts={},
            bytes_moved=0,
            errors=[Failure(job, "", f"stopped on an unexpected error: {reason}").as_json()],
            extra={"log": bounded(redact_text(trace), LOG_LIMIT)},
        )
    except StoreError as store_exc:  # the store is what failed: say both
        reason += f" (and the run could not be recorded: {store_exc})"
    return JobCrashed(job, shown(reason))


def read_index(store: BlobStore, job: str, name: str) -> dict[str, Any] | None:
    data = store.get(_index_key(job, name))
    return None if data is None else dict(json.loads(data))


def recent_runs(store: BlobStore, job: str) -> list[dict[str, Any]]:
    """The job's last RECENT runs, oldest first: start, seconds, bytes, ok."""
    data = store.get(_index_key(job, "recent.json"))
    return list(json.loads(data)) if data else []


def mark_running(store: BlobStore, job: str, holder: str) -> None:
    doc = {"since": utcnow(), "holder": holder}
    store.put(_index_key(job, "running.json"), json.dumps(doc).encode())


def clear_running(store: BlobStore, job: str) -> None:
    store.delete(_index_key(job, "running.json"))


def running_since(store: BlobStore, job: str) -> str | None:
    """When the job's current run started, wherever it runs; None when none does (a
    marker whose process on this machine is gone does not count)."""
    doc = read_index(store, job, "running.json")
    if doc is None or died_here(str(doc.get("holder", ""))):
        return None
    return str(doc.get("since") or "") or None


def record_keys(store: BlobStore, job: str) -> list[str]:
    """Every run record of a job, oldest first (record keys start with their start time)."""
    return [k for k in store.list(f"{RUNS}/{job}") if k.rsplit("/", 1)[-1] not in INDEX_FILES]


def prune_runs(store: BlobStore, job: str, keep: int) -> int:
    """Delete all but the newest `keep` records of a job; return how many went."""
    keys = record_keys(store, job)
    doomed = keys[: max(0, len(keys) - keep)]
    for key in doomed:
        store.delete(key)
    return len(doomed)
