"""What a reload of a running `up` applies, and what it names as needing a restart."""

from __future__ import annotations

from pathlib import Path

from mirror.core.config import parse_config
from tfmirror.reloading import keep_bound


def test_settings_bound_at_start_are_kept_and_named_the_rest_applies(tmp_path: Path) -> None:
    running = parse_config({"web": {"port": 8080}, "pypi": {"requirements": ["alpha"]}}, tmp_path)
    new = parse_config(
        {
            "web": {"port": 9090, "presign_s3": True},
            "storage": {"path": "elsewhere"},
            "devpi": {"url": "http://127.0.0.1:4000"},
            "schedule": {"lease_seconds": 60, "pypi": "0 * * * *"},
            "pypi": {"requirements": ["alpha", "gamma"]},
        },
        tmp_path,
    )

    applied, needs_restart = keep_bound(running, new)

    # devpi's serverdir and nginx's workdir default to folders in the store's.
    assert needs_restart == [
        "[storage] path",
        "[devpi] url",
        "[devpi] serverdir",
        "[proxy] workdir",
        "[web] port",
        "[schedule] lease_seconds",
    ]
    # What runs stays what it is: the port it listens on, the store, devpi, the lease.
    assert applied.web.port == 8080 and applied.storage == running.storage
    assert applied.devpi == running.devpi and applied.schedule.lease_seconds == 300
    # The rest is the new file's.
    assert applied.web.presign_s3 and applied.pypi == new.pypi
    assert applied.schedule.cron("pypi") == "0 * * * *"
    assert keep_bound(running, running) == (running, [])
