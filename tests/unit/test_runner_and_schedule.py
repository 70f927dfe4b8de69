"""Job runs: retries with backoff, records, retention; catch-up of overdue jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mirror.core.config import Config, parse_config
from mirror.core.errors import JobBusy
from mirror.core.runs import RunRecord, read_index, record_keys
from mirror.core.storage import BlobStore, LocalStore
from sync_jobs.runner import JobRunner
from sync_jobs.scheduler import catch_up, next_run, overdue, period


def setup(tmp_path: Path, **schedule: object) -> tuple[Config, LocalStore]:
    config = parse_config({"schedule": {"retry_backoff": 10, **schedule}}, tmp_path)
    return config, LocalStore(tmp_path / "store")


def recorded_job(outcomes: list[bool]):  # type: ignore[no-untyped-def]
    """A job that leaves a run record per call, succeeding or failing as told."""

    def job(config: Config, store: BlobStore, trigger: str) -> bool:
        ok = outcomes.pop(0)
        RunRecord.begin("pypi", trigger).finish(store, ok, {"new": 1}, 10, [])
        return ok

    return job


def test_failed_run_is_retried_with_exponential_backoff(tmp_path: Path) -> None:
    config, store = setup(tmp_path, retries=2)
    waits: list[float] = []
    runner = JobRunner(
        config, store, {"pypi": recorded_job([False, False, True])}, sleep=waits.append
    )
    assert runner.run("pypi", "manual") == "ok"
    assert waits == [10, 20]
    triggers = [read_index(store, "pypi", "latest.json")["trigger"]]  # type: ignore[index]
    assert triggers == ["retry"]
    assert read_index(store, "pypi", "totals.json") == {"runs": 3, "failed": 2, "bytes": 30}


def test_retries_are_bounded(tmp_path: Path) -> None:
    config, store = setup(tmp_path, retries=1)
    runner = JobRunner(
        config, store, {"pypi": recorded_job([False, False, True])}, sleep=lambda s: None
    )
    assert runner.run("pypi") == "failed"


def test_a_held_lock_means_busy_and_no_run(tmp_path: Path) -> None:
    config, store = setup(tmp_path)
    calls: list[str] = []
    runner = JobRunner(config, store, {"pypi": lambda c, s, t: calls.append(t) or True})
    lease = runner.lock.acquire("pypi")
    assert runner.run("pypi") == "busy" and calls == []
    assert lease is not None
    lease.release()
    assert runner.run("pypi") == "ok" and calls == ["schedule"]


def test_old_records_are_pruned_to_the_retention(tmp_path: Path) -> None:
    config, store = setup(tmp_path, keep_runs=3)
    runner = JobRunner(config, store, {"pypi": recorded_job([True] * 5)})
    for _ in range(5):
        runner.run("pypi")
    assert len(record_keys(store, "pypi")) == 3
    assert read_index(store, "pypi", "totals.json")["runs"] == 5  # type: ignore[index]


def test_catch_up_runs_only_overdue_jobs(tmp_path: Path) -> None:
    config, store = setup(tmp_path, pypi="0 */6 * * *", hub="", verify="", gc="")
    assert overdue(config, store, "pypi")  # never succeeded
    assert not overdue(config, store, "hub")  # not scheduled
    runner = JobRunner(config, store, {"pypi": recorded_job([True]), "hub": recorded_job([])})
    assert catch_up(config, runner) == {"pypi": "ok"}
    assert not overdue(config, store, "pypi")
    later = datetime.now(UTC) + timedelta(hours=7)
    assert overdue(config, store, "pypi", now=later)


def test_cron_period_and_next_run() -> None:
    now = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
    assert period("0 */6 * * *", now) == timedelta(hours=6)
    assert next_run("0 */6 * * *", now) == datetime(2026, 1, 1, 6, 0, tzinfo=UTC)


def test_a_prompt_stop_drops_queued_runs_and_does_not_wait_out_a_running_one(
    tmp_path: Path,
) -> None:
    import threading
    import time

    from sync_jobs.scheduler import build, stop_promptly

    config, store = setup(tmp_path, verify="0 3 * * *", gc="0 4 * * 0")
    release = threading.Event()
    started: list[str] = []

    def slow(config: Config, store: BlobStore, trigger: str) -> bool:
        started.append(trigger)
        release.wait(60)
        return True

    runner = JobRunner(config, store, {"verify": slow, "gc": slow})
    sched = build(config, runner)
    sched.start()
    sched.add_job(runner.run, args=["verify", "startup"], id="verify-startup")
    sched.add_job(runner.run, args=["gc", "startup"], id="gc-startup")
    deadline = time.monotonic() + 10
    while not runner.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    began = time.monotonic()
    still = stop_promptly(sched, runner, grace=0.5)
    took = time.monotonic() - began
    release.set()
    assert took < 2, took
    assert len(still) >= 1 and runner.wait_idle(10)


def test_a_closed_runner_starts_nothing_and_cuts_a_retry_wait_short(tmp_path: Path) -> None:
    import threading
    import time

    # retry_backoff 600: only a close can end the wait this soon.
    config, store = setup(tmp_path, retries=1, retry_backoff=600)
    runner = JobRunner(config, store, {"pypi": recorded_job([False, True])})
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(runner.run("pypi", "manual")))
    began = time.monotonic()
    worker.start()
    while read_index(store, "pypi", "latest.json") is None:  # the first attempt failed
        time.sleep(0.01)
    runner.close()
    worker.join(timeout=10)
    # Stopped while it waited to retry: interrupted, not failed again.
    assert outcome == ["interrupted"] and time.monotonic() - began < 10
    # A run asked for after the stop (a queued scheduled one) does not start.
    calls: list[str] = []
    runner.jobs["gc"] = lambda c, s, t: calls.append(t) or True
    assert runner.run("gc") == "skipped" and calls == []


def test_a_busy_tick_leaves_the_running_replicas_marker_alone(tmp_path: Path) -> None:
    # Before, a scheduler that found the job busy marked it running as its own and then
    # cleared the marker on its way out: the page said the job was not running, while
    # the replica holding its lease ran it.
    config, store = setup(tmp_path)
    running_here = JobRunner(config, store, {"pypi": lambda c, s, t: True})
    elsewhere = JobRunner(config, LocalStore(tmp_path / "store"), {"pypi": lambda c, s, t: True})
    with running_here.hold("pypi"):
        marker = read_index(store, "pypi", "running.json")
        assert marker is not None
        assert elsewhere.run("pypi") == "busy"
        assert read_index(store, "pypi", "running.json") == marker
    assert read_index(store, "pypi", "running.json") is None


def test_keeping_jobs_out_holds_their_leases_and_does_not_show_them_running(
    tmp_path: Path,
) -> None:
    # gc and verify's devpi repair keep the writers out through the runner; that is no
    # run of theirs: the page must not say they run, nor a stop record them interrupted.
    config, store = setup(tmp_path)
    runner = JobRunner(config, store, {"pypi": lambda c, s, t: True})
    elsewhere = JobRunner(config, LocalStore(tmp_path / "store"), {})
    with runner.keeping_out(("pypi", "hub")):
        assert runner.run("pypi") == "busy"
        busy = pytest.raises(JobBusy, match="pypi is running elsewhere")
        with busy, elsewhere.keeping_out(("pypi",)):
            pass
        assert read_index(store, "pypi", "running.json") is None
        assert runner.running() == set()
    # In a bundle's stead (`keep_out`), they show as running while it works.
    assert runner.keep_out(("pypi",), lambda: runner.running()) == {"pypi"}
    assert runner.run("pypi") == "ok"


def test_a_caller_that_backs_off_itself_asks_for_no_retries(tmp_path: Path) -> None:
    # A site's follow loop retries a failed pull in seconds; the runner's own retries
    # (a minute, then two) would hold the loop and its lease that long.
    config, store = setup(tmp_path, retries=2)
    waits: list[float] = []
    outcomes = [False, True]
    runner = JobRunner(config, store, {"pypi": recorded_job(outcomes)}, sleep=waits.append)
    assert runner.run("pypi", "schedule", retries=0) == "failed"
    assert waits == [] and outcomes == [True]
