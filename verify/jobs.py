"""The verify package's scheduled jobs: verify (with repair) and gc."""

from __future__ import annotations

import logging
from functools import partial

from mirror.core.config import Config
from mirror.core.journal import Journal, actor_for
from mirror.core.lease import KeepingOut
from mirror.core.runs import JobFn, RunRecord
from mirror.core.storage import BlobStore
from verify.gc import GcReport, collect
from verify.run import DevpiSession, run_verify

log = logging.getLogger("tfmirror.verify")


def verify_job(
    config: Config,
    store: BlobStore,
    trigger: str,
    devpi_session: DevpiSession,
    keeping_out: KeepingOut,
) -> bool:
    deep = config.schedule.verify_deep
    report = run_verify(
        config, store, devpi_session, keeping_out, fix=True, deep=deep, trigger=trigger
    )
    for problem in report.problems:
        log.error("verify: %s", problem)
    return report.ok


def run_gc(
    config: Config,
    store: BlobStore,
    trigger: str,
    keeping_out: KeepingOut,
    grace_hours: float | None = None,
    dry_run: bool = False,
) -> GcReport:
    """gc, however it was started: one wiring, and a run record for every real run (a
    dry run only looks)."""
    schedule = config.schedule
    hours = schedule.gc_grace_hours if grace_hours is None else grace_hours
    record = RunRecord.begin("gc", trigger)
    report = collect(store, hours * 3600, keeping_out, dry_run)
    if not dry_run:
        # Blobs, not offers: gc deletes only what no manifest lists, but an auditor
        # asks where the bytes of a removed release went.
        deleted = [{"event": "blob deleted", "sha256": sha} for sha in report.removed]
        Journal(store).record(deleted, actor_for(trigger), "gc: no manifest lists them")
        counts = {"removed": len(report.removed), "young": len(report.kept_young)}
        postponed = {"postponed": report.postponed} if report.postponed else None
        record.finish(store, True, counts, report.freed_bytes, [], postponed)
    return report


def gc_job(config: Config, store: BlobStore, trigger: str, keeping_out: KeepingOut) -> bool:
    log.info("%s", run_gc(config, store, trigger, keeping_out).summary())
    return True


def register(jobs: dict[str, JobFn], devpi_session: DevpiSession, keeping_out: KeepingOut) -> None:
    """The verify package's door: its jobs, given how to reach devpi for a run and the
    runner's way to keep the jobs out whose leases gc and a devpi repair need."""
    jobs["verify"] = partial(verify_job, devpi_session=devpi_session, keeping_out=keeping_out)
    jobs["gc"] = partial(gc_job, keeping_out=keeping_out)
