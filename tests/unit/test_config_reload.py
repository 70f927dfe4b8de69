"""What a reload of a running `up` applies, and what it names as needing a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.core.config import ENV_CONFIG, load_config, parse_config
from mirror.core.live_config import LiveConfig
from mirror.core.storage import LocalStore
from sync_jobs.runner import JobRunner
from tfmirror.reloading import ConfigReloader, keep_bound


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


def test_a_tfmirror_toml_written_after_a_start_on_the_built_in_default_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_CONFIG, raising=False)
    live = LiveConfig(load_config())
    assert live.current.source is None  # no file: the built-in default
    reloader = ConfigReloader(live, None, JobRunner(live, LocalStore(tmp_path / "data"), {}))
    reloader.check()
    assert live.note().reloaded_at is None  # nothing changed: nothing read

    (tmp_path / "tfmirror.toml").write_text('[pypi]\nrequirements = ["alpha"]\n')
    reloader.check()

    assert live.current.source == Path("tfmirror.toml")
    assert live.current.pypi.requirements == ("alpha",)
    assert live.note().needs_restart == [] and live.note().reloaded_at

    (tmp_path / "tfmirror.toml").write_text("[pypi]\nrequirements = 7\n")
    reloader.check()
    assert live.current.pypi.requirements == ("alpha",)
    assert live.note().refused.startswith("tfmirror.toml: [pypi] requirements")
