"""A running `tfmirror up` reads its config again: on SIGHUP, and before each scheduled job
when the file changed since it was last read. A valid new config applies at once through
the one holder (LiveConfig) that jobs read at each run start and pages at each request;
a changed [pypi] or [hub] syncs now, a changed schedule is rescheduled. What `up` bound
as it started (its listening port, the store, the devpi and nginx it runs, the lock's
lease) keeps running as it is and is named as needing a restart. An invalid one is
refused in one line, the running config stays: a typo must not take the fleet's mirror
down."""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import fields, replace
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from mirror.core.config import Config, config_path, load_config
from mirror.core.errors import ConfigError
from mirror.core.live_config import LiveConfig
from sync_jobs.runner import JobRunner, RunResult
from sync_jobs.scheduler import place_jobs, scheduled_jobs

log = logging.getLogger("tfmirror.config")

# Settings `up` binds as it starts, by section (None: all of it): its listening socket
# and the URL it prints, the store it opened, the devpi-server and nginx it runs, the
# lease length its leader lock was made with.
BOUND_AT_START: dict[str, tuple[str, ...] | None] = {
    "storage": None,
    "devpi": None,
    "proxy": None,
    "web": ("host", "port", "public_url"),
    "schedule": ("lease_seconds",),
}
# A change to these means the mirror should hold something else: sync it now, not hours
# from now at its next scheduled run.
SYNC_ON_CHANGE = ("pypi", "hub")


def keep_bound(running: Config, new: Config) -> tuple[Config, list[str]]:
    """`new`, with every setting bound at start kept as `running` has it, and the names
    ("[web] port") of those `new` would change: they need a restart."""
    changed: list[str] = []
    kept: dict[str, Any] = {}
    for section, keys in BOUND_AT_START.items():
        old_part, new_part = getattr(running, section), getattr(new, section)
        names = keys if keys is not None else tuple(f.name for f in fields(old_part))
        differ = [k for k in names if getattr(old_part, k) != getattr(new_part, k)]
        changed += [f"[{section}] {k}" for k in differ]
        kept[section] = replace(new_part, **{k: getattr(old_part, k) for k in names})
    return replace(new, **kept), changed


def _fingerprint(explicit: str | None) -> tuple[str, str]:
    """Which file the config comes from now, and a hash of its bytes: an edit shows even
    within the file system's timestamp resolution, a touch does not reload."""
    path = config_path(explicit)
    if path is None:
        return "", ""  # the built-in default (no --config, no ./tfmirror.toml)
    try:
        return str(path), hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return str(path), f"unreadable: {exc.strerror}"


class ConfigReloader:
    def __init__(self, live: LiveConfig, explicit: str | None, runner: JobRunner) -> None:
        self.live = live
        self.explicit = explicit
        self.runner = runner
        self.requested = False  # set by the SIGHUP handler; the main thread acts on it
        self._lock = threading.Lock()  # SIGHUP and scheduled jobs: one reload at a time
        self._seen = _fingerprint(explicit)
        self._scheduler: BackgroundScheduler | None = None

    def request(self) -> None:
        """Safe in a signal handler: only a flag (see mirror.core.stopping)."""
        self.requested = True

    def attach(self, scheduler: BackgroundScheduler) -> None:
        """The running scheduler: a reload reschedules on it and starts syncs on it."""
        self._scheduler = scheduler

    def scheduled(self, job: str) -> RunResult:
        """What each scheduled fire runs: the config file first, if it changed, then the
        job on the config as it is then (if that still schedules it)."""
        self.check(next_job=job)
        if job not in dict(scheduled_jobs(self.live.current)):
            return RunResult.SKIPPED
        return self.runner.run(job, "schedule")

    def check(self, next_job: str | None = None) -> None:
        """Reload if the file changed since it was last read."""
        with self._lock:
            if _fingerprint(self.explicit) != self._seen:
                self._reload("the file changed", next_job)

    def reload(self, why: str = "SIGHUP") -> None:
        with self._lock:
            self._reload(why, None)

    def _reload(self, why: str, next_job: str | None) -> None:
        # Taken before reading: an edit landing while it is read is seen at the next check.
        self._seen = _fingerprint(self.explicit)
        running = self.live.current
        try:
            new = load_config(self.explicit)
        except ConfigError as exc:
            self._refuse(why, str(exc))
            return
        except Exception as exc:  # a bug in reading it must not stop a serving mirror
            self._refuse(why, f"cannot read the config: {type(exc).__name__}: {exc}")
            return
        applied, needs_restart = keep_bound(running, new)
        self.live.apply(applied, needs_restart)
        log.info("config reloaded (%s) from %s", why, self.live.note().source)
        if needs_restart:
            log.warning("config change needs a restart: %s", ", ".join(needs_restart))
        self._follow(running, applied, next_job)

    def _refuse(self, why: str, error: str) -> None:
        self.live.refuse(error)
        log.error("config refused (%s); the running one stays: %s", why, error)

    def _follow(self, old: Config, new: Config, next_job: str | None) -> None:
        """Reschedule if the schedule changed; sync now what should hold something else,
        if the config schedules it (but not the job about to run anyway: it runs on the
        new config)."""
        scheduler = self._scheduler
        if scheduler is None:
            return
        if scheduled_jobs(old) != scheduled_jobs(new) or old.schedule != new.schedule:
            place_jobs(scheduler, new, self.scheduled)
        scheduled = dict(scheduled_jobs(new))
        for job in SYNC_ON_CHANGE:
            if getattr(old, job) == getattr(new, job) or job == next_job:
                continue
            if job not in self.runner.jobs or job not in scheduled:
                continue  # not scheduled: it runs when asked (an inner mirror's hub)
            log.info("%s: its config changed; syncing now", job)
            scheduler.add_job(
                self.runner.run_after,
                args=[job, "config"],
                id=f"{job}-config",
                name=job,
                replace_existing=True,  # one more run, however many reloads came first
            )
