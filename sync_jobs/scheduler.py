"""APScheduler 3 wiring: cron jobs from [schedule], jitter, coalescing, misfire grace,
and a catch-up at start for any job whose last success is older than its period."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from mirror.core.config import Config
from mirror.core.runs import read_index
from mirror.core.stopping import StopRequest
from mirror.core.storage import BlobStore
from sync_jobs.runner import JobRunner, RunResult

log = logging.getLogger("tfmirror.scheduler")


def trigger(cron: str, jitter: int = 0) -> CronTrigger:
    cron_trigger = CronTrigger.from_crontab(cron, timezone=UTC)
    cron_trigger.jitter = jitter or None  # from_crontab takes no jitter; the field is public
    return cron_trigger


def next_run(cron: str, now: datetime | None = None) -> datetime | None:
    now = now or datetime.now(UTC)
    fire: datetime | None = CronTrigger.from_crontab(cron, timezone=UTC).get_next_fire_time(
        None, now
    )
    return fire


def period(cron: str, now: datetime | None = None) -> timedelta:
    """The gap between two consecutive fire times after `now`."""
    first = next_run(cron, now)
    if first is None:
        return timedelta.max
    second = next_run(cron, first + timedelta(seconds=1))
    return (second - first) if second else timedelta.max


def overdue(config: Config, store: BlobStore, job: str, now: datetime | None = None) -> bool:
    cron = config.schedule.cron(job)
    if not cron:
        return False
    last = read_index(store, job, "last-success.json")
    if last is None:
        return True
    now = now or datetime.now(UTC)
    return now - datetime.fromisoformat(last["end"]) > period(cron, now)


def scheduled_jobs(config: Config) -> list[tuple[str, str]]:
    """Jobs with a schedule; a hub-only or inner mirror has no PyPI side to sync, and a
    site ([follow]) syncs nothing itself: its follow loop (`up`) pulls instead."""
    site = config.follow is not None
    return [
        (job, cron)
        for job, cron in config.jobs
        if cron and (job != "pypi" or config.pypi.syncs) and not (site and job in ("pypi", "hub"))
    ]


def build(
    config: Config, runner: JobRunner, run: Callable[[str], object] | None = None
) -> BackgroundScheduler:
    """`run(job)`: what each scheduled fire calls; by default the runner's run."""
    scheduler = BackgroundScheduler(timezone=UTC)
    place_jobs(scheduler, config, run or partial(runner.run, trigger="schedule"))
    return scheduler


def place_jobs(
    scheduler: BackgroundScheduler, config: Config, run: Callable[[str], object]
) -> None:
    """Schedule every job `config` schedules, with its cron (replacing what was there);
    unschedule the others. At start, and again when a reload changes the schedule."""
    schedule = config.schedule
    wanted = dict(scheduled_jobs(config))
    for job, _ in schedule.jobs:
        if job not in wanted and scheduler.get_job(job) is not None:
            scheduler.remove_job(job)
    for job, cron in wanted.items():
        scheduler.add_job(
            run,
            trigger(cron, schedule.jitter),
            args=[job],
            id=job,
            name=job,
            coalesce=True,  # a backlog of missed runs is one run
            max_instances=1,
            misfire_grace_time=schedule.misfire_grace,
            replace_existing=True,
        )


def catch_up(
    config: Config, runner: JobRunner, only: tuple[str, ...] | None = None
) -> dict[str, RunResult]:
    """Run now, in order, every scheduled job (of `only`) whose last success is older
    than its period."""
    store = runner.store
    return {
        job: runner.run(job, "startup", only_if=partial(overdue, config, store, job))
        for job, _ in scheduled_jobs(config)
        if (only is None or job in only) and overdue(config, store, job)
    }


def add_startup_jobs(scheduler: BackgroundScheduler, config: Config, runner: JobRunner) -> None:
    """Queue, on the running scheduler, a one-off run of every overdue job."""
    store = runner.store
    for job in (job for job, _ in scheduled_jobs(config) if overdue(config, store, job)):
        scheduler.add_job(
            runner.run,
            args=[job, "startup"],
            kwargs={"only_if": partial(overdue, config, store, job)},
            id=f"{job}-startup",
            name=job,
        )


def stop_promptly(
    scheduler: BackgroundScheduler | None, runner: JobRunner, grace: float
) -> set[str]:
    """Stop for an operator's Ctrl-C: queued runs are dropped, a running one gets `grace`
    seconds; returns the jobs still running then (they publish nothing half-done: every
    manifest commits last, and their lease lapses with the process)."""
    runner.close()
    if scheduler is not None:
        scheduler.shutdown(wait=False)
    runner.wait_idle(grace)
    return runner.running()


def run_forever(config: Config, runner: JobRunner) -> int:
    """`tfmirror scheduler`: catch up, then run on schedule until SIGTERM/SIGINT; exit 0."""
    stop = StopRequest()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    scheduler = build(config, runner)
    scheduler.start()
    add_startup_jobs(scheduler, config, runner)
    log.info("scheduler running: %s", ", ".join(f"{j} '{c}'" for j, c in scheduled_jobs(config)))
    stop.wait()
    log.info("stopping: waiting for running jobs to finish and release their locks")
    runner.close()  # nothing new starts and a job waiting to retry gives up now
    scheduler.shutdown(wait=True)
    return 0
