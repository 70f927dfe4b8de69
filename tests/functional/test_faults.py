"""Faults in the middle of real work: the S3 endpoint vanishes, the disk fills, devpi
dies, the upstream resets, the sync itself is killed at random points, `up` is killed.
Each time: a clear failure, nothing half-published (every manifest's blobs are there and
hash right), and the next run completes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mirror.core.config import load_config
from mirror.core.storage import open_store
from testkit.mirror_env import operator_config
from testkit.servers import port_free
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.support.processes import command_line, descendants
from tests.support.relay import Relay
from verify.references import referenced
from verify.scrub import scrub

ROOT = Path(__file__).resolve().parents[2]
NOISE = 40_000_000  # incompressible bytes per wheel: a run long enough to land kills in


def write_config(tmp: Path, upstream: Upstream, requirements: list[str], storage: str) -> Path:
    return operator_config(
        tmp, upstream.index_url, requirements, storage, "[proxy]\nenabled = false\n"
    )


def cli(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tfmirror.cli", "--config", str(config), *args]


def run(config: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli(config, *args), capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def published(config: Path) -> dict[str, Any]:
    """What the store serves: manifests by key, each checked against its blobs."""
    cfg = load_config(str(config))
    store = open_store(cfg.storage)
    report = scrub(store, referenced(cfg, store))
    assert report.problems == [], [str(p.__dict__) for p in report.problems]
    return {k: json.loads(store.get(k) or b"{}") for k in store.list("manifests")}


def filenames(manifests: dict[str, Any]) -> set[str]:
    return {f["filename"] for doc in manifests.values() for f in doc.get("files", [])}


def assert_clear_failure(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    said = proc.stdout + proc.stderr
    assert any(w in said for w in words), said[-2000:]


# ------------------------------------------------------------------ the sync is killed


def test_kill_9_at_random_points_never_half_publishes(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add(WheelSpec("alpha", "1.0", requires=["gamma"]))
    upstream.add(WheelSpec("gamma", "1.0", noise=NOISE))
    config = write_config(tmp_path, upstream, ["alpha"], 'path = "data"')
    began = time.monotonic()
    assert run(config, "sync", "pypi", "--no-devpi").returncode == 0
    whole_run = time.monotonic() - began  # start, resolve, download, hash, commit
    rng = random.Random(20)
    killed = 0
    for i in range(1, 21):
        # A new gamma each round, so every run has the same real work to be killed in.
        upstream.add(WheelSpec("gamma", f"1.{i}", noise=NOISE))
        sync = subprocess.Popen(
            cli(config, "sync", "pypi", "--no-devpi"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        time.sleep(rng.uniform(0.1, 0.95) * whole_run)
        sync.send_signal(signal.SIGKILL)
        killed += sync.wait(timeout=60) == -signal.SIGKILL
        published(config)  # consistent after every kill
    assert killed >= 12, f"only {killed} of 20 runs were still running when killed"
    final = run(config, "sync", "pypi", "--no-devpi")
    assert final.returncode == 0, final.stderr[-2000:]
    assert "gamma-1.20-py3-none-any.whl" in filenames(published(config))


# ------------------------------------------------------------- the upstream resets


def test_an_upstream_reset_mid_body_fails_clearly_and_the_next_run_completes(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0"))
    config = write_config(tmp_path, upstream, ["alpha"], 'path = "data"')
    assert run(config, "sync", "pypi", "--no-devpi").returncode == 0
    before = published(config)
    spec = WheelSpec("beta", "2.0", noise=3_000_000)
    upstream.add(spec, "cut")

    cut = run(config, "sync", "pypi", "--no-devpi")

    assert_clear_failure(cut, "connection broken")
    assert published(config) == before  # still the previous closure, whole
    upstream.add(spec, "ok")
    again = run(config, "sync", "pypi", "--no-devpi")
    assert again.returncode == 0, again.stderr[-2000:]
    assert spec.filename in filenames(published(config))


# ---------------------------------------------------------------- S3 disappears


@pytest.fixture
def s3_relay(moto: Any) -> Iterator[Relay]:
    with Relay(moto.port) as relay:
        yield relay


def test_the_s3_endpoint_vanishing_mid_sync_fails_clearly_and_loses_nothing(
    upstream: Upstream, tmp_path: Path, s3_relay: Relay, s3_bucket: str
) -> None:
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0"))
    # One retry: the endpoint stays gone, and each retry's backoff only stretches the test.
    storage = (
        f'backend = "s3"\nbucket = "{s3_bucket}"\nendpoint_url = "{s3_relay.url}"\nretries = 1'
    )
    config = write_config(tmp_path, upstream, ["alpha"], storage)
    assert run(config, "sync", "pypi", "--no-devpi").returncode == 0
    before = published(config)
    upstream.add(WheelSpec("beta", "2.0", noise=30_000_000))
    s3_relay.cut_after(client_bytes=10_000_000)  # in the middle of the new wheel's upload

    sync = subprocess.Popen(
        cli(config, "sync", "pypi", "--no-devpi"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    out, err = sync.communicate(timeout=300)
    s3_relay.restore()

    assert_clear_failure(
        subprocess.CompletedProcess([], sync.returncode, out, err), "store", "S3", "endpoint"
    )
    assert published(config) == before
    again = run(config, "sync", "pypi", "--no-devpi")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "beta-2.0-py3-none-any.whl" in filenames(published(config))


# ----------------------------------------------------------------- the disk fills


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as the store needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_clearly_and_frees_what_it_wrote(
    upstream: Upstream, tmp_path: Path, small_disk: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0"))
    config = write_config(tmp_path, upstream, ["alpha"], f'path = "{small_disk / "data"}"')
    assert run(config, "sync", "pypi", "--no-devpi").returncode == 0
    before = published(config)
    big = WheelSpec("beta", "2.0", noise=20_000_000)
    upstream.add(big)

    full = run(config, "sync", "pypi", "--no-devpi")

    assert_clear_failure(full, "No space left on device", "no space")
    assert published(config) == before
    # What the failed download wrote is gone: the disk is not left full.
    free = os.statvfs(small_disk)
    assert free.f_bavail * free.f_frsize > 10 * 2**20
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    again = run(config, "sync", "pypi", "--no-devpi")
    assert again.returncode == 0, again.stderr[-2000:]
    assert big.filename in filenames(published(config))


# ------------------------------------------------------------------ devpi dies


def test_devpi_killed_mid_pull_fails_clearly_and_the_next_run_repairs(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0", noise=120_000_000))
    config = write_config(tmp_path, upstream, ["alpha"], 'path = "data"')
    sync = subprocess.Popen(
        cli(config, "sync", "pypi"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    devpi_pid = None
    deadline = time.monotonic() + 120
    while devpi_pid is None and time.monotonic() < deadline:
        devpi_pid = next(
            (c for c in descendants(sync.pid) if "devpi-server" in command_line(c)), None
        )
        time.sleep(0.05)
    assert devpi_pid is not None, "the sync never started devpi"
    # Kill it once the store has the big wheel: devpi is then pulling it.
    data = tmp_path / "data" / "blobs"
    while (
        time.monotonic() < deadline
        and sum(p.stat().st_size for p in data.rglob("*") if p.is_file()) < 100_000_000
    ):
        time.sleep(0.05)
    os.kill(devpi_pid, signal.SIGKILL)
    out, err = sync.communicate(timeout=300)

    assert_clear_failure(subprocess.CompletedProcess([], sync.returncode, out, err), "devpi")
    published(config)
    again = run(config, "sync", "pypi")
    assert again.returncode == 0, again.stderr[-2000:]
    check = run(config, "verify", "--no-install")
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]


# --------------------------------------------------------------- `up` is killed


def _start_up(config: Path) -> subprocess.Popen[str]:
    up = subprocess.Popen(
        cli(config, "up"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT
    )
    assert up.stdout is not None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = up.stdout.readline()
        if line.startswith("entry point:") or not line:
            return up
    raise AssertionError("up never printed its banner")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_up_stopped_leaves_no_child_holding_a_port(
    upstream: Upstream, tmp_path: Path, how: str
) -> None:
    upstream.add(WheelSpec("alpha", "1.0"))
    config = write_config(tmp_path, upstream, ["alpha"], 'path = "data"')
    cfg = load_config(str(config))
    devpi_port = int(cfg.devpi.url.rsplit(":", 1)[1])
    up = _start_up(config)
    children = descendants(up.pid)
    assert any("devpi-server" in command_line(c) for c in children), children
    assert not port_free(devpi_port) and not port_free(cfg.web.port)

    stopped = time.monotonic()
    up.send_signal(getattr(signal, how))
    try:
        up.wait(timeout=30)
    finally:
        if up.poll() is None:  # failed: do not leave it running for the tests after
            up.kill()
    while time.monotonic() - stopped < 10 and any(Path(f"/proc/{c}").exists() for c in children):
        time.sleep(0.1)

    alive = [c for c in children if Path(f"/proc/{c}").exists() and command_line(c)]
    assert alive == [], [command_line(c) for c in alive]
    assert time.monotonic() - stopped < 10
    assert port_free(devpi_port) and port_free(cfg.web.port)


# ------------------------------------------------------- the sync is stopped mid-pull


def test_ctrl_c_while_devpi_pulls_records_the_run_interrupted_and_the_next_start_resumes(
    upstream: Upstream, tmp_path: Path
) -> None:
    # Before: the terminal's Ctrl-C reached devpi too, every pull under way broke off
    # (IncompleteRead), and the run was recorded failed with one error a file, and
    # retried; or, stopped in the main thread, not recorded at all.
    deps = [f"dep{i}" for i in range(6)]
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta", *deps]))
    upstream.add(WheelSpec("beta", "1.0", noise=100_000_000))  # devpi's pull: seconds
    for name in deps:
        upstream.add(WheelSpec(name, "1.0", noise=2_000_000))
    config = write_config(tmp_path, upstream, ["alpha"], 'path = "data"')
    sync = subprocess.Popen(
        cli(config, "sync", "pypi"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,  # its own group, as a terminal's foreground job is
    )
    devpi_log = tmp_path / "data" / "devpi-server.log"

    def pulling() -> bool:  # devpi logs each request as it starts
        return devpi_log.exists() and "/+f/" in devpi_log.read_text(errors="replace")

    deadline = time.monotonic() + 180
    while not pulling() and time.monotonic() < deadline and sync.poll() is None:
        time.sleep(0.02)
    assert pulling(), "devpi never pulled"
    os.killpg(sync.pid, signal.SIGINT)  # Ctrl-C at a terminal, while devpi pulls
    _, err = sync.communicate(timeout=120)

    assert sync.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("tfmirror: interrupted"), err[-2000:]
    runs = tmp_path / "data" / "runs" / "pypi"
    record = json.loads((runs / "latest.json").read_text())
    assert record["outcome"] == "interrupted", record
    assert [e["reason"] for e in record["errors"]] == [
        "interrupted by SIGINT during devpi pull (after the commit); "
        "nothing half-done was published"
    ]
    assert json.loads((runs / "totals.json").read_text())["failed"] == 0
    published(config)

    # The next start takes up from there: one run, ok, no retry.
    again = run(config, "sync", "pypi")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "retry" not in again.stdout + again.stderr
    outcomes = [json.loads(p.read_text())["outcome"] for p in sorted(runs.glob("2*.json"))]
    assert outcomes == ["interrupted", "ok"]
    check = run(config, "verify", "--no-install")
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
