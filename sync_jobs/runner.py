"""Running one job under its lease, renewed while it runs, whoever starts it: `run(job)`
here (the scheduler: retried with backoff; a command: its own call, `work=`),
`start(job)` on a thread (the admin endpoint); `keep_out(jobs, work)` runs work that
none of those jobs may run beside (a bundle, a store migration), and `keeping_out(jobs)`
holds them off around a `with` (handed to gc and verify's devpi repair). Nothing else
takes a lease."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from enum import StrEnum
from typing import TypeVar, overload

from mirror.core.config import Config
from mirror.core.errors import JobBusy, StoreError
from mirror.core.lease import LeaderLock, Lease, holder_id, holding, renewed, still_held
from mirror.core.live_config import LiveConfig
from mirror.core.runs import (
    JobFn,
    RunRecord,
    clear_running,
    interrupt_runs,
    mark_running,
    prune_runs,
    record_crash,
)
from mirror.core.stopping import stop_signal
from mirror.core.storage import BlobStore

log = logging.getLogger("tfmirror.jobs")
T = TypeVar("T")


class RunResult(StrEnum):
    """What became of one attempt to run a job (a str, so it prints as itself)."""

    OK = "ok"
    FAILED = "failed"
    BUSY = "busy"  # another holder has the job's lease
    SKIPPED = "skipped"  # no longer due once the lease was held
    INTERRUPTED = "interrupted"  # the runner closed (a stop) while it ran: no retry


class JobRunner:
    def __init__(
        self,
        config: Config | LiveConfig,
        store: BlobStore,
        jobs: dict[str, JobFn],
        lock: LeaderLock | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        # A holder: `up` swaps the config in it on a reload; each run reads it as it starts.
        self.live = config if isinstance(config, LiveConfig) else LiveConfig(config)
        self.store = store
        self.jobs = jobs
        # The lease length is fixed here for the process (a reload names it as needing
        # a restart): the lock and the renewals must agree on it.
        self.lock = lock or store.leader_lock(self.live.current.schedule.lease_seconds)
        self.sleep = sleep or self._pause  # tests give a clock of their own
        self._running: Counter[str] = Counter()  # runs in this process, by job
        self._since: dict[str, datetime] = {}  # when each running job started here
        self._trigger: dict[str, str] = {}  # and what started it
        self._changed = threading.Condition()
        self._closed = False  # stopping: no job starts, no retry waits

    @property
    def config(self) -> Config:
        """The config as it is now; a run started before a reload keeps its own."""
        return self.live.current

    def close(self) -> None:
        """Stop for good: a job asked to run from now on is skipped (a run the scheduler
        queued just before the stop would otherwise start after it, and start the
        services it needs again), and a job waiting to retry gives up."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def run_after(self, job: str, trigger: str) -> RunResult:
        """Run `job` once its run here (if one is on) has finished: a run that started on
        the old config must not stand in for the one a new config asks for."""
        with self._changed:
            self._changed.wait_for(lambda: self._closed or not self._running[job])
        return self.run(job, trigger)

    def running(self) -> set[str]:
        with self._changed:
            return {job for job, count in self._running.items() if count}

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job runs here (at most `timeout` s); False if one still does."""
        with self._changed:
            return self._changed.wait_for(lambda: not +self._running, timeout)

    @overload
    def run(
        self,
        job: str,
        trigger: str = "schedule",
        only_if: Callable[[], bool] | None = None,
        *,
        retries: int | None = None,
    ) -> RunResult: ...

    @overload
    def run(
        self, job: str, trigger: str = "manual", *, work: Callable[[], T], wait: bool = False
    ) -> T: ...

    def run(
        self,
        job: str,
        trigger: str | None = None,
        only_if: Callable[[], bool] | None = None,
        *,
        work: Callable[[], T] | None = None,
        wait: bool = False,
        retries: int | None = None,
    ) -> RunResult | T:
        """Run `job` here, now, if no one else is.

        Without `work` (the scheduler): the job's registered function, retried with
        backoff ([schedule] retries, or `retries`: 0 for a caller that backs off itself,
        as a site's follow loop does); BUSY while another holder has the lease. `only_if`
        is checked again once the lease is held: another scheduler may have run the job
        between our decision to run it and our turn.

        With `work` (a command, which prints what the run found): that call instead,
        once, and what it returns; JobBusy while another holder has the lease (or, with
        `wait`, a wait for it); a crash is recorded as the job's run and raised on.
        """
        if work is not None:
            with self.hold(job, wait, trigger=trigger or "manual"):
                return work()
        trigger = trigger or "schedule"
        # Counted as running from the moment it is not refused: a stop either refuses
        # it or waits for it (or exits past it), never misses one still taking its lease.
        with self._tracked(job, trigger):
            if self._closed:
                log.info("%s: stopping; not starting it", job)
                return RunResult.SKIPPED
            lease = self.lock.acquire(job)
            if lease is None:
                log.info("%s: another scheduler holds the lock; skipping this run", job)
                return RunResult.BUSY
            if only_if is not None and not only_if():
                lease.release()
                return RunResult.SKIPPED
            return self._run_leased(lease, trigger, retries)

    def start(self, job: str, trigger: str = "manual") -> None:
        """Run `job` on a thread of its own (the admin endpoint); JobBusy, naming the
        holder, while another has its lease. The run's record says how it went."""
        lease = self.lock.acquire(job)
        if lease is None:
            raise JobBusy(job, self.lock.holder(job))
        threading.Thread(target=self._run_leased, args=(lease, trigger), daemon=True).start()

    def keep_out(self, jobs: tuple[str, ...], work: Callable[[], T], wait: bool = False) -> T:
        """`work` in the stead of `jobs` (a bundle, a store migration): none of them runs
        meanwhile (their leases held; JobBusy, or with `wait` a wait, while one runs),
        and each shows as running here and on the page while it does. The work is no run
        of theirs: it records its own runs, if any (a bundle's)."""
        with self.keeping_out(jobs, wait, in_their_stead=True):
            return work()

    @contextmanager
    def keeping_out(
        self, jobs: tuple[str, ...], wait: bool = False, in_their_stead: bool = False
    ) -> Iterator[None]:
        """None of `jobs` runs while the body does: their leases held; JobBusy naming
        the holder while one runs, or with `wait` a wait for it. By itself (gc's deletes,
        verify's devpi repair: a `KeepingOut`) the leases alone: those jobs are not shown
        as running, nor recorded as interrupted by a stop. `in_their_stead` (`keep_out`):
        held as `hold(record=False)` holds them, shown as running."""
        ttl = self.config.schedule.lease_seconds
        with ExitStack() as held:
            for job in jobs:
                held.enter_context(
                    self.hold(job, wait, record=False)
                    if in_their_stead
                    else holding(self.lock, job, ttl, wait, self.sleep)
                )
            yield

    def _run_leased(self, lease: Lease, trigger: str, retries: int | None = None) -> RunResult:
        job = lease.job
        config = self.config  # the whole run, its retries too, on one config
        with self._keep(lease, trigger):
            schedule = config.schedule
            for attempt in range((schedule.retries if retries is None else retries) + 1):
                if attempt:
                    wait = schedule.retry_backoff * 2 ** (attempt - 1)
                    log.warning("%s failed; retry %d in %.0f s", job, attempt, wait)
                    if not self._closed:
                        self.sleep(wait)
                    if self._closed:
                        return RunResult.INTERRUPTED
                if self._attempt(config, job, trigger if not attempt else "retry"):
                    return RunResult.OK
                if self._closed:  # it failed because it was stopped: that is no fault
                    return RunResult.INTERRUPTED
            return RunResult.FAILED

    def _pause(self, seconds: float) -> None:
        """A retry's backoff, or a wait for a lease: cut short when the runner closes."""
        with self._changed:
            if not self._closed:
                self._changed.wait_for(lambda: self._closed, seconds)
                return
        time.sleep(seconds)  # closed already: a plain wait (a CLI-style hold, say)

    def _attempt(self, config: Config, job: str, trigger: str) -> bool:
        try:
            return self.jobs[job](config, self.store, trigger)
        except Exception as exc:  # any bug or unforeseen input: a failed run, not silence
            log.error("%s", record_crash(self.store, job, trigger, exc))
            return False

    @contextmanager
    def hold(
        self, job: str, wait: bool = False, record: bool = True, trigger: str = "manual"
    ) -> Iterator[Lease]:
        """Hold `job`'s lease around a run of it in the caller's `with` (`run(work=)`,
        `keep_out`, a test); raises JobBusy while another holder has it, or waits for it
        with `wait`. `record=False`: the caller only keeps this job out, and records its
        own runs."""
        ttl = self.config.schedule.lease_seconds
        with (
            holding(self.lock, job, ttl, wait, self.sleep) as lease,
            self._tracked(job, trigger),
            self._marked(job),
        ):
            try:
                yield lease
            except Exception as exc:
                if not record:
                    raise
                raise record_crash(self.store, job, trigger, exc) from exc
            except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (tfmirror.cli)
                if record:
                    self.record_interrupted({job}, stop_signal(exc))
                raise

    @contextmanager
    def _keep(self, lease: Lease, trigger: str) -> Iterator[None]:
        with (
            renewed(lease, self.config.schedule.lease_seconds),
            self._tracked(lease.job, trigger),
            self._marked(lease.job),
        ):
            yield

    def record_interrupted(self, jobs: set[str], stopped_by: str) -> None:
        """Each of `jobs` still running here was stopped (by `stopped_by`, a signal's
        name): its run is recorded as interrupted, as far as it got, and the job's own
        record, if its thread gets that far before the process ends, is not written."""
        with self._changed:
            since = {job: self._since.get(job) or datetime.now(UTC) for job in jobs}
            triggers = {job: self._trigger.get(job, "manual") for job in jobs}
        for job, started in sorted(since.items()):
            if not interrupt_runs(self.store, job, started, stopped_by):
                # Stopped before the job began its record (waiting for its lease, say).
                RunRecord(job, triggers[job], started).interrupt(self.store, stopped_by)

    @contextmanager
    def _tracked(self, job: str, trigger: str = "manual") -> Iterator[None]:
        """Count the job as running here (a stop waits for it, and records its run as
        interrupted with this trigger if it never began its record)."""
        with self._changed:
            if not self._running[job]:
                self._since[job] = datetime.now(UTC)
                self._trigger[job] = trigger
            self._running[job] += 1
        try:
            yield
        finally:
            with self._changed:
                self._running[job] -= 1
                self._changed.notify_all()

    @contextmanager
    def _marked(self, job: str) -> Iterator[None]:
        """Inside the job's lease: mark it running for every replica's page; prune its
        run records after. Both are shared state, the lease holder's alone: a tick that
        found the job busy, or a run whose lease went to another replica while it was
        paused, would otherwise clear the marker of the replica that runs it."""
        with suppress(StoreError):  # the page's word only; never the job's failure
            mark_running(self.store, job, holder_id())
        try:
            yield
        finally:
            if still_held(job):
                prune_runs(self.store, job, self.config.schedule.keep_runs)
                with suppress(StoreError):
                    clear_running(self.store, job)
