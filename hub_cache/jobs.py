"""The hub side's scheduled job."""

from __future__ import annotations

import logging

from hub_cache.hub_sync import HubReport, HubSync
from mirror.core.config import Config
from mirror.core.runs import JobFn
from mirror.core.storage import BlobStore

log = logging.getLogger("tfmirror.hub")


def sync_hub(config: Config, store: BlobStore, trigger: str) -> HubReport:
    """The hub sync, however it was started: one wiring, one run record."""
    return HubSync(config, store).run(trigger)


def hub_job(config: Config, store: BlobStore, trigger: str) -> bool:
    report = sync_hub(config, store, trigger)
    log.info("%s", report.summary())
    return report.ok


def register(jobs: dict[str, JobFn]) -> None:
    """The hub side's door: its job."""
    jobs["hub"] = hub_job
