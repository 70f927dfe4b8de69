"""The mirror's parts, each built once from its config and only when first asked for
(devpi-server's XOM): the store, every package's jobs and the runner they all go
through, the gate a new model version passes, the way to devpi. Every command and the
web app take one `MirrorParts`; nothing else wires these together."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import cached_property, partial
from typing import TYPE_CHECKING

from mirror.core.config import Config
from mirror.core.live_config import LiveConfig
from mirror.core.runs import Failure, JobFn
from mirror.core.storage import BlobStore, open_store

if TYPE_CHECKING:
    from follow.pull import Pull
    from hub_cache.hub_sync import Gate, HubReport
    from mirror.advisories.sync import AdvisoriesReport
    from mirror.devpi.publish import DevpiIndex
    from mirror.pypi.sync import Progress, SyncReport
    from sync_jobs.runner import JobRunner

log = logging.getLogger("tfmirror.devpi")

# What each part needs is imported where the part is built: the jobs bring every job's
# code (and TensorFlow's probes), which a command that runs none (pip-conf, status) skips.


class MirrorParts:
    def __init__(self, config: Config | LiveConfig, store: BlobStore | None = None) -> None:
        # A holder: `up` swaps the config in it on a reload; each run reads it as it starts.
        self.live = config if isinstance(config, LiveConfig) else LiveConfig(config)
        if store is not None:  # a caller's own (tests, a bench): the cached value
            self.__dict__["store"] = store

    @property
    def config(self) -> Config:
        """The config as it is now (a reload replaces it)."""
        return self.live.current

    @cached_property
    def store(self) -> BlobStore:
        return open_store(self.config.storage)

    @cached_property
    def jobs(self) -> dict[str, JobFn]:
        """Every package's jobs, each through its package's `register` door."""
        import follow.jobs
        import hub_cache.jobs
        import mirror.advisories.sync
        import verify.jobs
        from tfmirror.jobs import pypi_job
        from tfmirror.snapshotting import snapshot_job

        jobs: dict[str, JobFn] = {"pypi": pypi_job, "snapshot": snapshot_job}
        hub_cache.jobs.register(jobs, gate_for=self.gate_for)
        verify.jobs.register(jobs, self.devpi_session, self.keeping_out)
        mirror.advisories.sync.register(jobs)
        follow.jobs.register(jobs, offer_for=_offer_for, settle=_settle_devpi)
        return jobs

    @cached_property
    def runner(self) -> JobRunner:
        """The one runner every way of starting a job goes through, with every job."""
        from sync_jobs.runner import JobRunner

        return JobRunner(self.live, self.store, self.jobs)

    def keeping_out(
        self, jobs: tuple[str, ...], wait: bool = False
    ) -> AbstractContextManager[None]:
        """The runner's `keeping_out`, for the jobs built before the runner is (gc and
        verify keep the writers out through it)."""
        return self.runner.keeping_out(jobs, wait)

    def gate_for(self, config: Config, store: BlobStore) -> Gate:
        """The check a new model version passes before it is served: that the
        environments named for it can load it (verify.compat)."""
        from verify.compat import compat_gate

        return compat_gate(config, store)

    def devpi_session(self, config: Config, store: BlobStore) -> AbstractContextManager[DevpiIndex]:
        """devpi, and the pages it mirrors from, for one run (started if down)."""
        from tfmirror.services import services_for_sync

        return services_for_sync(config, store)

    def offer_manifests(self) -> tuple[int, list[Failure]]:
        """devpi offers what the manifests list (after a bundle import), less what the
        advisory database the bundle brought has every environment here block."""
        from tfmirror.services import offer_manifests, withhold_advised

        withhold_advised(self.config, self.store)
        return offer_manifests(self.config, self.store)

    def follow(self) -> tuple[Pull, int, list[Failure]]:
        """One pull from the centre by hand (`tfmirror follow`): as `up`'s loop, one record."""
        from follow.jobs import follow_recorded

        return follow_recorded(
            self.config, self.store, "manual", self.offer_manifests, _settle_devpi
        )

    def sync_pypi(self, progress: Progress | None = None, devpi: bool = True) -> SyncReport:
        """The PyPI sync by hand (`tfmirror sync`): as the scheduled job's, one record."""
        from tfmirror.jobs import sync_pypi

        return sync_pypi(self.config, self.store, "manual", progress, devpi)

    def sync_advisories(self) -> AdvisoriesReport:
        """The advisory database refreshed by hand, as the scheduled job does it."""
        from mirror.advisories.sync import sync_advisories

        return sync_advisories(self.config, self.store, "manual")

    def sync_hub(self) -> HubReport:
        """The hub sync by hand, through the gate the scheduled one passes."""
        from hub_cache.jobs import sync_hub

        return sync_hub(self.config, self.store, "manual", self.gate_for)


def _offer_for(config: Config, store: BlobStore) -> Callable[[], tuple[int, list[Failure]]]:
    """devpi offers what the manifests list, for a run on `config` (a pull's commit)."""
    from tfmirror.services import offer_manifests

    return partial(offer_manifests, config, store)


def _settle_devpi(config: Config, store: BlobStore) -> None:
    """A running devpi purges what a followed quarantine takes away; one that is down
    does it as tfmirror next starts it, before it serves."""
    from mirror.devpi.errors import DevpiError, DevpiStartError
    from mirror.devpi.publish import settle_running_devpi

    try:
        settle_running_devpi(config, store)
    except (DevpiError, DevpiStartError) as exc:
        log.warning("devpi: could not purge what the centre quarantined yet: %s", exc)
