"""[schedule]: when each job runs (a cron expression, or "" for never) and how runs
behave: jitter, retries, the lease, what is kept."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirror.core.config.keys import SECONDS_OR_ZERO, Check, Form, Section, key, read_table
from mirror.core.errors import ConfigError

SCHEDULED_JOBS = ("pypi", "hub", "verify", "gc", "snapshot", "advisories")
_CRON_EXAMPLE = '"0 */6 * * *"'


def _cron(s: Section, name: str, value: str) -> str:
    if not value:
        return value
    from apscheduler.triggers.cron import CronTrigger  # only for a config that schedules

    try:
        CronTrigger.from_crontab(value)
    except ValueError as exc:
        raise ConfigError(
            f'[{s.name}] {name} = {value!r}: not a cron expression ({exc}); e.g. "0 */6 * * *", '
            'or "" to not schedule it'
        ) from None
    return value


CRON = Form(str, _cron)


@dataclass(frozen=True)
class ScheduleConfig:
    """Cron expressions per job (empty: not scheduled) and how runs behave."""

    pypi: str = key("0 */6 * * *", _CRON_EXAMPLE, form=CRON)
    hub: str = key("30 */6 * * *", _CRON_EXAMPLE, form=CRON)
    verify: str = key("0 3 * * *", _CRON_EXAMPLE, form=CRON)
    gc: str = key("0 4 * * 0", _CRON_EXAMPLE, form=CRON)
    # Off unless asked: a dated snapshot (tfmirror.snapshotting), e.g. "0 3 * * *".
    snapshot: str = key("", _CRON_EXAMPLE, form=CRON)
    # OSV's export is rebuilt continuously; once a day is what osv-scanner users do.
    # Not scheduled where the config has no [advisories] (config.load).
    advisories: str = key("40 1 * * *", _CRON_EXAMPLE, form=CRON)
    # seconds of random delay, so replicas and mirrors do not stampede
    jitter: int = key(120, "120", Check(lambda s: s >= 0, "must be 0 or more seconds"))
    misfire_grace: int = key(3600, "3600", Check(lambda s: s >= 1, "must be at least 1 second"))
    retries: int = key(2, "2", Check(lambda n: 0 <= n <= 10, "use 0 to 10"))
    retry_backoff: float = key(60.0, "60", SECONDS_OR_ZERO)  # first wait; doubles each retry
    lease_seconds: int = key(300, "300", Check(lambda s: s >= 5, "must be at least 5 seconds"))
    # run records kept per job
    keep_runs: int = key(
        1000, "1000", Check(lambda n: n >= 1, "keep at least 1 run record per job")
    )
    # unreferenced blobs younger than this are left alone
    gc_grace_hours: float = key(24.0, "24", Check(lambda h: h >= 0, "must be 0 or more hours"))
    verify_deep: bool = key(False, "true")  # the scheduled verify also loads every model
    # dated snapshots the schedule keeps (`keep` alone would read as the run records')
    snapshot_keep: int = key(14, "14", Check(lambda n: n >= 1, "keep at least 1 snapshot"))

    @property
    def jobs(self) -> tuple[tuple[str, str], ...]:
        """Each scheduled job and its cron expression, "" for not scheduled."""
        return tuple((job, self.cron(job)) for job in SCHEDULED_JOBS)

    def cron(self, job: str) -> str:
        return str(getattr(self, job)) if job in SCHEDULED_JOBS else ""


def read(raw: Any, base: Path) -> ScheduleConfig:
    return read_table(ScheduleConfig, "schedule", raw, base)
