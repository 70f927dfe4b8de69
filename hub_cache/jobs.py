"""The hub side's scheduled job."""

from __future__ import annotations

import logging

from hub_cache.hub_sync import HubSync
from mirror.config import Config
from mirror.storage import BlobStore

log = logging.getLogger("tfmirror.hub")


def hub_job(config: Config, store: BlobStore, trigger: str) -> bool:
    report = HubSync(config, store).run(trigger)
    log.info("%s", report.summary())
    return report.ok


def register(jobs: dict[str, object]) -> None:
    jobs["hub"] = hub_job
