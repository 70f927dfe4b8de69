"""The PyPI sync as a job: one wiring (devpi started for it if down, a run record even
when devpi cannot be had), whether the CLI, the scheduler or the admin endpoint starts
it. Every package's jobs are gathered in tfmirror.parts."""

from __future__ import annotations

import logging

from mirror.core.config import Config
from mirror.core.errors import ServiceError
from mirror.core.runs import Failure, RunRecord
from mirror.core.storage import BlobStore
from mirror.pypi.sync import Progress, PypiSync, SyncReport
from tfmirror.services import services_for_sync

log = logging.getLogger("tfmirror.pypi")


def sync_pypi(
    config: Config,
    store: BlobStore,
    trigger: str,
    progress: Progress | None = None,
    devpi: bool = True,
) -> SyncReport:
    """The PyPI sync, however it was started (the CLI with its progress bar and
    `--no-devpi`, the scheduler, the admin endpoint): one wiring, one run record."""
    if not devpi:
        return PypiSync(config, store, None, progress).run(trigger)
    try:
        with services_for_sync(config, store) as index:
            return PypiSync(config, store, index, progress).run(trigger)
    except ServiceError as exc:  # DevpiStartError is one
        # No sync ran: still leave a record, so the status page says why.
        failure = Failure("devpi", config.devpi.url, str(exc))
        counts = {"new": 0, "skipped": 0, "failed": 1}
        RunRecord.begin("pypi", trigger).finish(store, False, counts, 0, [failure.as_json()])
        return SyncReport(failures=[failure])


def pypi_job(config: Config, store: BlobStore, trigger: str) -> bool:
    if not config.pypi.syncs:
        log.info("pypi sync: %s; nothing to do", config.pypi.why_no_sync)
        return True
    report = sync_pypi(config, store, trigger)
    log.info("%s", report.summary())
    return report.ok
