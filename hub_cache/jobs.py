"""The hub side's scheduled job."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from hub_cache.hub_sync import Gate, HubReport, HubSync
from mirror.core.config import Config
from mirror.core.runs import JobFn
from mirror.core.storage import BlobStore

log = logging.getLogger("tfmirror.hub")


# Builds the gate new versions pass before they are served (verify.compat.compat_gate).
GateFor = Callable[[Config, BlobStore], Gate]


def sync_hub(
    config: Config, store: BlobStore, trigger: str, gate_for: GateFor | None = None
) -> HubReport:
    """The hub sync, however it was started: one wiring, one run record."""
    gate = gate_for(config, store) if gate_for is not None else None
    return HubSync(config, store, gate).run(trigger)


def hub_job(
    config: Config, store: BlobStore, trigger: str, gate_for: GateFor | None = None
) -> bool:
    report = sync_hub(config, store, trigger, gate_for)
    log.info("%s", report.summary())
    return report.ok


def register(jobs: dict[str, JobFn], gate_for: GateFor | None = None) -> None:
    """The hub side's door: its job, given the gate new versions pass."""
    jobs["hub"] = partial(hub_job, gate_for=gate_for)
