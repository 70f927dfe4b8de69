"""docker-compose.yml: it parses, every service command is a valid tfmirror command, and
those very commands run here as the compose services would (no Docker engine here):
MinIO -> moto_server, devpi, web under gunicorn, and two schedulers sharing one lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from mirror.core.config import load_config
from testkit.servers import MotoServer, free_port, make_venv, pip_install
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tfmirror.cli import _parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
OURS = ("devpi", "web", "scheduler", "proxy")


def command(service: str) -> list[str]:
    cmd = COMPOSE["services"][service]["command"]
    assert isinstance(cmd, list) and cmd[0] == "tfmirror", f"{service}: {cmd}"
    return list(cmd)


def test_compose_parses_and_each_command_is_a_valid_tfmirror_command() -> None:
    services = COMPOSE["services"]
    assert {"minio", "minio-bucket", *OURS} <= set(services)
    for name in OURS:
        args = _parser().parse_args(command(name)[1:])
        assert args.config == "/etc/tfmirror/tfmirror.toml"
        mounts = services[name]["volumes"]
        assert "./deploy/tfmirror.toml:/etc/tfmirror/tfmirror.toml:ro" in mounts
        assert services[name]["healthcheck"]["test"], name
    assert services["web"]["deploy"]["replicas"] == 2
    # One published port: the proxy's. devpi and the fronts sit behind it.
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"proxy"}, published
    assert "devpi-data:/var/lib/devpi:ro" in services["proxy"]["volumes"]
    assert services["scheduler"]["deploy"]["replicas"] == 2
    assert "healthcheck" in services["minio"]
    config = load_config(str(ROOT / "deploy" / "tfmirror.toml"))
    assert config.storage.backend == "s3" and config.devpi.serverdir is None
    assert config.devpi_mirror_url == "http://web:8080/simple/"
    assert config.front_urls == ("http://web:8080",)


def test_the_compose_commands_serve_pip_with_one_sync_between_two_schedulers(
    moto: MotoServer, s3_bucket: str, upstream: Upstream, tmp_path: Path, nginx: str
) -> None:
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0"))
    devpi_port, web_port, proxy_port = free_port(), free_port(), free_port()
    config = tmp_path / "tfmirror.toml"
    # deploy/tfmirror.toml with this machine's addresses in place of the compose names.
    text = (ROOT / "deploy" / "tfmirror.toml").read_text()
    for old, new in {
        '"http://minio:9000"': f'"{moto.url}"',
        'bucket = "tfmirror"': f'bucket = "{s3_bucket}"',
        '"http://devpi:3141"': f'"http://127.0.0.1:{devpi_port}"',
        '"http://web:8080/simple/"': f'"http://127.0.0.1:{web_port}/simple/"',
        "port = 8080": f"port = {web_port}",
        "port = 8000": f"port = {proxy_port}",
        '["http://web:8080"]': f'["http://127.0.0.1:{web_port}"]',
        '"/var/cache/tfmirror-proxy"': f'"{tmp_path / "proxy"}"',
        '["tensorflow", "tensorflow-hub"]': '["alpha"]',
    }.items():
        assert old in text
        text = text.replace(old, new)
    text = text.replace("[pypi]\n", f'[pypi]\nupstream = "{upstream.index_url}"\n')
    text = text.replace("[proxy]", f'[proxy]\nnginx = "{nginx}"')
    config.write_text(text)
    env = {**os.environ, "TFMIRROR_ADMIN_TOKEN": "admin-token"}

    def start(service: str, name: str) -> subprocess.Popen[str]:
        cmd = [a.replace("/etc/tfmirror/tfmirror.toml", str(config)) for a in command(service)]
        cmd = ["127.0.0.1" if a == "0.0.0.0" else a for a in cmd]
        cmd = [str(tmp_path / "devpi") if a == "/var/lib/devpi" else a for a in cmd]
        log = (tmp_path / f"{name}.log").open("w")
        return subprocess.Popen(
            [sys.executable, "-m", "tfmirror.cli", *cmd[1:]],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        procs["devpi"] = start("devpi", "devpi")
        procs["web"] = start("web", "web")
        wait_for(f"http://127.0.0.1:{devpi_port}/+api")
        wait_for(f"http://127.0.0.1:{web_port}/healthz")
        procs["proxy"] = start("proxy", "proxy")
        wait_for(f"http://127.0.0.1:{proxy_port}/healthz/proxy")
        procs["scheduler-1"] = start("scheduler", "scheduler-1")
        procs["scheduler-2"] = start("scheduler", "scheduler-2")

        status = wait_for_status(web_port, lambda s: jobs(s)["pypi"]["last_run"] is not None)
        assert jobs(status)["pypi"]["last_run"]["outcome"] == "ok", logs(tmp_path)
        assert jobs(status)["pypi"]["totals"]["runs"] == 1, "both schedulers ran the sync"

        # The fleet comes in through the one published port.
        venv = make_venv(tmp_path / "venv")
        index = f"http://127.0.0.1:{proxy_port}/tfmirror/pypi/+simple/"
        pip = pip_install(venv, index, "alpha")
        assert pip.returncode == 0, pip.stderr
        proxied = requests.get(f"http://127.0.0.1:{proxy_port}/api/status", timeout=10)
        assert jobs(proxied.json())["pypi"]["last_run"]["outcome"] == "ok"

        for name in ("scheduler-1", "scheduler-2"):
            procs[name].send_signal(signal.SIGTERM)
            assert procs.pop(name).wait(timeout=60) == 0
        leases = moto.client().list_objects_v2(Bucket=s3_bucket, Prefix="locks/")
        assert leases.get("KeyCount", 0) == 0, "a stopped scheduler left its lease behind"
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=30)


def jobs(status: dict[str, Any]) -> dict[str, Any]:
    return {j["job"]: j for j in status["jobs"]}


def wait_for(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not come up")


def wait_for_status(port: int, done: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status: dict[str, Any] = requests.get(
            f"http://127.0.0.1:{port}/api/status", timeout=5
        ).json()
        if done(status):
            time.sleep(1)  # let a second scheduler's catch-up come and go
            return dict(requests.get(f"http://127.0.0.1:{port}/api/status", timeout=5).json())
        time.sleep(0.5)
    pytest.fail("the schedulers never finished a sync")


def logs(tmp_path: Path) -> str:
    return json.dumps({p.name: p.read_text()[-2000:] for p in tmp_path.glob("*.log")}, indent=1)
