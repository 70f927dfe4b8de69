"""The PyPI side's scheduled job."""

from __future__ import annotations

import logging

from mirror.config import Config
from mirror.devpi import DevpiError
from mirror.devpi_server import DevpiStartError
from mirror.pypi_sync import PypiSync
from mirror.runs import RunRecord
from mirror.services import services_for_sync
from mirror.storage import BlobStore

log = logging.getLogger("tfmirror.pypi")


def pypi_job(config: Config, store: BlobStore, trigger: str) -> bool:
    try:
        with services_for_sync(config, store) as devpi:
            report = PypiSync(config, store, devpi).run(trigger)
    except (DevpiError, DevpiStartError) as exc:
        # No sync ran: still leave a record, so the status page says why.
        RunRecord.begin("pypi", trigger).finish(
            store, ok=False, counts={"new": 0, "skipped": 0, "failed": 1}, bytes_moved=0,
            errors=[{"name": "devpi", "url": config.devpi.url, "reason": str(exc)}],
        )  # fmt: skip
        log.error("pypi sync: devpi: %s", exc)
        return False
    log.info("%s", report.summary())
    return report.ok


def register(jobs: dict[str, object]) -> None:
    jobs["pypi"] = pypi_job
