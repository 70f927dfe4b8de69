"""The verify package's scheduled jobs: verify (with repair) and gc."""

from __future__ import annotations

import logging

from mirror.config import Config
from mirror.runs import RunRecord
from mirror.storage import BlobStore
from verify.gc import collect
from verify.run import run_verify

log = logging.getLogger("tfmirror.verify")


def verify_job(config: Config, store: BlobStore, trigger: str) -> bool:
    report = run_verify(config, store, fix=True, deep=config.schedule.verify_deep,
                        trigger=trigger)  # fmt: skip
    for problem in report.problems:
        log.error("verify: %s", problem)
    return report.ok


def gc_job(config: Config, store: BlobStore, trigger: str) -> bool:
    record = RunRecord.begin("gc", trigger)
    report = collect(store, config.schedule.gc_grace_hours * 3600)
    record.finish(store, True, {"removed": len(report.removed), "young": len(report.kept_young)},
                  report.freed_bytes, [])  # fmt: skip
    log.info("%s", report.summary())
    return True


def register(jobs: dict[str, object]) -> None:
    jobs["verify"] = verify_job
    jobs["gc"] = gc_job
