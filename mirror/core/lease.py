"""Holding a job's lease while the job runs: each job runs at most once at a time,
whoever starts it (a CLI command, a scheduler on any machine, the admin endpoint).
`holding` takes the lease from the store's leader lock (JobBusy while another holds it),
`renewed` keeps it renewed for the run, and `fence` lets a commit check it is still this
process's to make (LeaseLost). Code below the runner that must keep jobs out (gc's
deletes, verify's devpi repair) is handed the runner's way to, a `KeepingOut`. The locks
themselves live with their backends (mirror.core.storage.locks: the contract; local.lock,
s3.lock); their names stay importable from here."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from mirror.core.errors import JobBusy, LeaseLost
from mirror.core.redact import bounded
from mirror.core.storage.local.lock import FileLock as FileLock
from mirror.core.storage.locks import LOCKS as LOCKS
from mirror.core.storage.locks import LeaderLock as LeaderLock
from mirror.core.storage.locks import Lease as Lease
from mirror.core.storage.locks import died_here as died_here
from mirror.core.storage.locks import holder_id as holder_id
from mirror.core.storage.s3.lock import S3Lock as S3Lock

log = logging.getLogger("tfmirror.lease")


class KeepingOut(Protocol):
    """The runner's `keeping_out`, handed to the code that needs it: none of `jobs` runs
    while the `with` body does (their leases held); JobBusy naming the holder while one
    runs, or with `wait` a wait for it."""

    def __call__(
        self, jobs: tuple[str, ...], wait: bool = False
    ) -> AbstractContextManager[None]: ...


# The leases this process holds, by job, while their holders run: commits check them.
_held: dict[str, tuple[Lease, float]] = {}  # job -> (lease, ttl)
_held_lock = threading.Lock()
FENCE_MARGIN = 5.0  # seconds


def fence(job: str) -> None:
    """Call right before a commit made under `job`'s lease: raises LeaseLost once the
    lease was lost, or has gone so long unrenewed (a paused process, an unreachable
    store) that another replica may soon take it over. Without a lease held here (a
    library call, a test) there is nothing to fence."""
    with _held_lock:
        held = _held.get(job)
    if held is None:
        return
    lease, ttl = held
    left = lease.left()
    # Longer than one commit's writes take; a sixth of the ttl leaves room for one
    # renewal that failed (every third) before a live holder would be fenced.
    if left < min(FENCE_MARGIN, ttl / 6):
        raise LeaseLost(
            f"{job}: the lease is lost or about to be ({left:.0f} s left of it): not "
            "committing; another replica may hold it now, and its run commits instead"
        )


def still_held(job: str) -> bool:
    """`fence(job)` as a question, for a write of shared state that is no commit (a run
    record's index, the page's state): False once it is another replica's to make."""
    try:
        fence(job)
    except LeaseLost:
        return False
    return True


@contextmanager
def renewed(lease: Lease, ttl: float) -> Iterator[None]:
    """Renew the lease every third of its ttl while the body runs; release it after.
    Commits in the body check it with `fence(job)`."""
    stop = threading.Event()
    with _held_lock:
        _held[lease.job] = (lease, ttl)

    def renew() -> None:
        while not stop.wait(ttl / 3):
            try:
                kept = lease.renew()
            except Exception as exc:  # the store is unreachable: try again next time
                log.warning("%s: could not renew the lease: %s", lease.job, bounded(str(exc), 300))
                continue
            if not kept:
                log.error("%s: lost the leader lease while running", lease.job)
                return

    renewer = threading.Thread(target=renew, name=f"lease-{lease.job}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        with _held_lock:
            if _held.get(lease.job, (None, 0.0))[0] is lease:
                del _held[lease.job]
        stop.set()
        renewer.join()
        try:
            lease.release()
        except Exception as exc:
            # Never hide the job's own outcome behind this: the lease expires by itself.
            log.warning(
                "%s: could not release the lease (%s); it expires within %.0f s",
                lease.job,
                bounded(str(exc), 300),
                ttl,
            )


@contextmanager
def holding(
    lock: LeaderLock,
    job: str,
    ttl: float,
    wait: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Lease]:
    """Hold `job`'s lease around the body; JobBusy while another has it (or, with
    `wait`, wait for it)."""
    lease = lock.acquire(job)
    while lease is None and wait:
        sleep(1.0)
        lease = lock.acquire(job)
    if lease is None:
        raise JobBusy(job, lock.holder(job))
    with renewed(lease, ttl):
        yield lease
