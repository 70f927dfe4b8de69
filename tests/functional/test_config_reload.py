"""A running `tfmirror up` takes a changed config without a restart: on SIGHUP, and
before each scheduled job when the file changed. A bad new config is refused in one
line while the running one keeps working; a setting bound at start is named as needing
a restart."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from mirror.core.config import load_config
from mirror.core.errors import ConfigError
from testkit.servers import free_port
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec

ROOT = Path(__file__).resolve().parents[2]
TARGET = '[[pypi.targets]]\npython = "3.11"\nplatform = "manylinux_2_28_x86_64"\n'


def config_text(
    upstream: Upstream,
    web_port: int,
    devpi_port: int,
    requirements: list[str],
    pypi_cron: str = "0 0 1 1 *",
    extra: str = "",
) -> str:
    """An operator's config: its own devpi, no nginx, only the PyPI sync scheduled."""
    return f"""
[storage]
path = "data"

[devpi]
url = "http://127.0.0.1:{devpi_port}"
index = "fleet/pypi"

[web]
port = {web_port}

[proxy]
enabled = false

[schedule]
pypi = "{pypi_cron}"
hub = ""
verify = ""
gc = ""
jitter = 0

[pypi]
upstream = "{upstream.index_url}"
requirements = {json.dumps(requirements)}
timeout = 2
retries = 1
build_backends = []

{TARGET}
{extra}"""


class Up:
    """`tfmirror up` as a real process, its output in files (nothing it writes blocks)."""

    def __init__(self, config: Path, tmp: Path) -> None:
        self.config = config
        self.out, self.err = tmp / "up.out", tmp / "up.err"
        self.port = load_config(str(config)).web.port
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tfmirror.cli", "--config", str(config), "up"],
                stdout=out,
                stderr=err,
                text=True,
                cwd=ROOT,
            )
        self.wait_for(lambda: "entry point:" in self.out.read_text(), 180, "the banner")

    def said(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/status", timeout=10) as r:
            doc: dict[str, Any] = json.load(r)
            return doc

    def page(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=10) as r:
            text: str = r.read().decode()
            return text

    def hangup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def wait_for(self, done: Callable[[], bool], seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"up ended ({self.proc.returncode}): {self.said()}"
            try:
                if done():
                    return
            except OSError:
                pass  # the page between two tries
            time.sleep(0.3)
        raise AssertionError(f"waited {seconds} s for {what}:\n{self.said()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def environments(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {env["name"]: env for env in status["inventory"]["environments"]}


def synced(status: dict[str, Any], env: str, files: int) -> bool:
    found = environments(status).get(env)
    return bool(
        found and found["configured"] and all(t["files"] == files for t in found["targets"])
    )


@pytest.fixture
def ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Up]]:
    running: list[Up] = []
    yield running
    for up in running:
        up.stop()


def test_sighup_applies_a_new_environment_without_a_restart(
    upstream: Upstream, tmp_path: Path, ports: tuple[int, int], started: list[Up]
) -> None:
    upstream.add(WheelSpec("alpha", "1.0"))
    upstream.add(WheelSpec("gamma", "1.0", requires=["delta"]))
    upstream.add(WheelSpec("delta", "1.0"))
    config = tmp_path / "tfmirror.toml"
    config.write_text(config_text(upstream, *ports, ["alpha"]))
    up = Up(config, tmp_path)
    started.append(up)
    assert list(environments(up.status())) == ["default"]

    serving = '[pypi.environments.serving]\nrequirements = ["gamma"]\n' + TARGET.replace(
        "pypi.targets", "pypi.environments.serving.targets"
    )
    config.write_text(config_text(upstream, *ports, ["alpha"], extra=serving))
    up.hangup()

    # The new environment is synced at once (its two wheels), and shown as configured.
    up.wait_for(lambda: synced(up.status(), "serving", 2), 120, "the new environment synced")
    status = up.status()
    assert synced(status, "default", 1)
    assert status["config"]["reloaded_at"] and not status["config"]["refused"]
    assert status["config"]["needs_restart"] == []
    page = up.page()
    assert "config reloaded at" in page and "(not in the config)" not in page
    # The fleet's index lists it too: the pages read the same config.
    with urllib.request.urlopen(f"http://127.0.0.1:{up.port}/fleet/serving/+simple/") as r:
        assert r.status == 200


def test_a_bad_config_is_refused_in_one_line_and_the_running_one_stays(
    upstream: Upstream, tmp_path: Path, ports: tuple[int, int], started: list[Up]
) -> None:
    upstream.add(WheelSpec("alpha", "1.0"))
    config = tmp_path / "tfmirror.toml"
    good = config_text(upstream, *ports, ["alpha"])
    config.write_text(good)
    up = Up(config, tmp_path)
    started.append(up)

    config.write_text(good.replace("timeout = 2", "timeout = -1"))
    with pytest.raises(ConfigError) as refused:
        load_config(str(config))
    up.hangup()

    up.wait_for(lambda: up.status()["config"]["refused"], 30, "the refusal on the page")
    status = up.status()
    assert status["config"]["refused"] == str(refused.value)
    assert "\n" not in status["config"]["refused"]
    assert str(escape(str(refused.value))) in up.page()
    refusals = [ln for ln in up.err.read_text().splitlines() if "config refused" in ln]
    assert len(refusals) == 1 and str(refused.value) in refusals[0], refusals
    # Still up, still on the old config: its environment and its sync work.
    assert up.proc.poll() is None
    assert synced(status, "default", 1)
    with urllib.request.urlopen(f"http://127.0.0.1:{up.port}/fleet/pypi/+simple/alpha/") as r:
        assert b"alpha-1.0" in r.read()

    # Fixed, with a port only a restart can take: the rest applies, the port is named.
    web_port, devpi_port = ports
    fixed = config_text(upstream, free_port(), devpi_port, ["alpha"]).replace(
        "timeout = 2", "timeout = 3"
    )
    config.write_text(fixed)
    up.hangup()
    up.wait_for(lambda: not up.status()["config"]["refused"], 30, "the refusal cleared")
    status = up.status()
    assert status["config"]["needs_restart"] == ["[web] port"]
    assert "config change needs a restart: [web] port" in up.page()
    assert "config change needs a restart: [web] port" in up.err.read_text()
    assert up.port == web_port  # it still serves where it started


def test_a_changed_file_is_read_before_the_next_scheduled_job(
    upstream: Upstream, tmp_path: Path, ports: tuple[int, int], started: list[Up]
) -> None:
    upstream.add(WheelSpec("alpha", "1.0"))
    upstream.add(WheelSpec("gamma", "1.0"))
    config = tmp_path / "tfmirror.toml"
    every_minute = "* * * * *"
    config.write_text(config_text(upstream, *ports, ["alpha"], pypi_cron=every_minute))
    up = Up(config, tmp_path)
    started.append(up)
    assert synced(up.status(), "default", 1)

    # No signal: the scheduled sync (within the minute) reads the file first.
    config.write_text(config_text(upstream, *ports, ["alpha", "gamma"], pypi_cron=every_minute))
    up.wait_for(lambda: synced(up.status(), "default", 2), 150, "gamma synced by the schedule")
    status = up.status()
    assert status["config"]["reloaded_at"]
    assert [row["requirement"] for row in status["lag"]] == ["alpha", "gamma"]
