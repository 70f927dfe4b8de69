"""The verify package's scheduled jobs: verify (with repair) and gc."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from mirror.core.config import Config
from mirror.core.runs import RunRecord
from mirror.core.storage import BlobStore
from verify.gc import collect
from verify.run import DevpiSession, run_verify

JobFn = Callable[[Config, BlobStore, str], bool]
log = logging.getLogger("tfmirror.verify")


def verify_job(config: Config, store: BlobStore, trigger: str, devpi_session: DevpiSession) -> bool:
    deep = config.schedule.verify_deep
    report = run_verify(config, store, devpi_session, fix=True, deep=deep, trigger=trigger)
    for problem in report.problems:
        log.error("verify: %s", problem)
    return report.ok


def gc_job(config: Config, store: BlobStore, trigger: str) -> bool:
    record = RunRecord.begin("gc", trigger)
    schedule = config.schedule
    report = collect(store, schedule.gc_grace_hours * 3600, lease_seconds=schedule.lease_seconds)
    counts = {"removed": len(report.removed), "young": len(report.kept_young)}
    postponed = {"postponed": report.postponed} if report.postponed else None
    record.finish(store, True, counts, report.freed_bytes, [], postponed)
    log.info("%s", report.summary())
    return True


def register(jobs: dict[str, JobFn], devpi_session: DevpiSession) -> None:
    """The verify package's door: its jobs, given how to reach devpi for a run."""
    jobs["verify"] = partial(verify_job, devpi_session=devpi_session)
    jobs["gc"] = gc_job
