"""Thousands of idle connections against every server tfmirror starts: the web front
(under `up` and `tfmirror serve`), devpi-server and the nginx entry point keep answering
a page and a wheel within a second; a server that dies anyway takes `up` down with it.
nginx answers 429 to one address past its requests in flight, and serves the others.

Before: waitress polled with select(), which raises ValueError for a descriptor past
1024 and ended the server loop; about 1,100 idle connections left `up` running with its
front and devpi answering nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from mirror.core.config import Config, DevpiConfig, load_config
from mirror.core.web_server import WebServer
from mirror.proxy.nginx import NginxProcess, plan_for
from testkit.mirror_env import operator_config
from testkit.servers import free_port, read_banner
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.functional.test_fleet_proxy import big_mirror, crowd, wheel_path
from tfmirror.app import create_app

ROOT = Path(__file__).resolve().parents[2]
IDLE = 5000
ANSWER_SECONDS = 1.0


@pytest.fixture(autouse=True)
def _open_files() -> None:
    """This process holds every idle connection: raise its own limit to the hard one."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < IDLE + 1000:
        pytest.skip(f"the hard limit on open files ({hard}) cannot hold {IDLE} connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def config_file(tmp_path: Path, upstream: Upstream, proxy: str) -> Path:
    upstream.add(WheelSpec("alpha", "1.0"))
    path = operator_config(tmp_path, upstream.index_url, ["alpha"])
    path.write_text(path.read_text() + f"\n[proxy]\n{proxy}\n")
    return path


def start(
    config: Path, *args: str, prefix: tuple[str, ...] = ("-m", "tfmirror.cli")
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *prefix, "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


def pids(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def sockets_held(pid: int) -> int:
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            held += os.readlink(fd).startswith("socket:")
    return held


@contextmanager
def idle_crowd(url: str, holders: list[int]) -> Iterator[None]:
    """IDLE connections to url's port that send nothing, until every one is held by the
    server's processes `holders` (accepted, not waiting in the kernel's queue)."""
    parts = urlsplit(url)
    socks: list[socket.socket] = []
    try:
        for _ in range(IDLE):
            try:
                socks.append(socket.create_connection((parts.hostname, parts.port), timeout=10))
            except OSError as exc:
                raise AssertionError(
                    f"{url}: idle connection {len(socks) + 1} of {IDLE} failed ({exc}): "
                    "its server stopped accepting"
                ) from None
        deadline = time.monotonic() + 30
        while (held := sum(map(sockets_held, holders))) < IDLE and time.monotonic() < deadline:
            time.sleep(0.2)
        assert held >= IDLE, f"{url}: its server holds {held} of {IDLE} idle connections"
        yield
    finally:
        for sock in socks:
            sock.close()


def wheel_link(page_url: str) -> str:
    page = requests.get(page_url, timeout=30)
    assert page.status_code == 200, (page_url, page.status_code)
    href = re.search(r'href="([^"]+\.whl)[^"]*"', page.text)
    assert href, page.text
    return urljoin(page_url, href.group(1))


def answers_quickly(url: str) -> None:
    started = time.monotonic()
    try:
        answer = requests.get(url, timeout=ANSWER_SECONDS + 1)
    except requests.RequestException as exc:
        raise AssertionError(f"{url}: no answer beside {IDLE} idle connections ({exc})") from None
    took = time.monotonic() - started
    assert answer.status_code == 200, (url, answer.status_code)
    assert took < ANSWER_SECONDS, f"{url} took {took:.2f} s beside {IDLE} idle connections"


def nginx_workers(workdir: Path) -> list[int]:
    master = pids(str(workdir / "nginx.conf"))
    assert master, "no nginx"
    found = subprocess.run(["pgrep", "-P", str(master[0])], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def test_every_server_answers_a_page_and_a_wheel_within_a_second_beside_5000_idle_connections(
    upstream: Upstream, tmp_path: Path, nginx: str
) -> None:
    path = config_file(tmp_path, upstream, f'nginx = "{nginx}"\nport = {free_port()}')
    config: Config = load_config(str(path))
    up = start(path, "up")
    try:
        banner = read_banner(up)
        assert "pypi sync at start: ok" in banner, banner
        assert up.poll() is None, stop(up)
        devpi = pids(str(config.devpi.serverdir))
        entry = config.proxy.base_url
        servers = {
            "front": (f"{config.web.base_url}/simple/alpha/", [up.pid]),
            "devpi": (f"{config.devpi.index_url}alpha/", devpi),
            "nginx": (
                f"{entry}/{config.devpi.index}/+simple/alpha/",
                nginx_workers(config.proxy.workdir),
            ),
        }
        wheels = {name: wheel_link(page) for name, (page, _) in servers.items()}
        problems = []  # each server's, so one run tells which fail
        for name, (page, holders) in servers.items():
            wheel = wheels[name]
            try:
                with idle_crowd(page, holders):
                    answers_quickly(page)
                    answers_quickly(wheel)
            except (AssertionError, requests.RequestException) as exc:
                problems.append(f"{name}: {exc}")
            assert up.poll() is None, (name, stop(up))
    finally:
        code, err = stop(up)
    assert problems == [], "\n".join(problems)
    assert code == 0, err[-3000:]

    # `tfmirror serve`: the front alone, on the store `up` filled.
    port = free_port()
    serve = start(path, "serve", "--port", str(port))
    try:
        page = f"http://127.0.0.1:{port}/simple/alpha/"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and serve.poll() is None:
            try:
                requests.get(page, timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.2)
        wheel = wheel_link(page)
        with idle_crowd(page, [serve.pid]):
            answers_quickly(page)
            answers_quickly(wheel)
        assert serve.poll() is None, stop(serve)
    finally:
        stop(serve)


@pytest.mark.parametrize("dies", ["front", "devpi"])
def test_up_exits_non_zero_when_a_server_it_started_dies(
    dies: str, upstream: Upstream, tmp_path: Path
) -> None:
    path = config_file(tmp_path, upstream, "enabled = false")
    config = load_config(str(path))
    trigger = tmp_path / "kill-the-front"
    up = start(
        path,
        "up",
        prefix=(
            "-m",
            "tests.support.dying_front",
            str(trigger),
        ),
    )
    try:
        banner = read_banner(up)
        assert "entry point:" in banner, banner
        if dies == "front":
            trigger.touch()
        else:
            for pid in pids(str(config.devpi.serverdir)):
                os.kill(pid, signal.SIGKILL)
        try:
            up.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`up` still runs 20 s after its {dies} died, serving nothing there")
    finally:
        code, err = stop(up)
    assert code == 1, err[-3000:]
    what = "the web front" if dies == "front" else "devpi-server exited"
    assert f"tfmirror: {what}" in err, err[-3000:]
    assert pids(str(config.devpi.serverdir)) == [], "devpi outlived up"


def status_from(source: str, url: str) -> int:
    """The status of a GET of `url` sent from the loopback address `source`."""
    parts = urlsplit(url)
    address = (parts.hostname, parts.port)
    with socket.create_connection(address, timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        return int(sock.recv(64).split()[1])


def test_one_address_past_its_requests_in_flight_gets_429_and_another_is_served(
    nginx: str, devpi: DevpiConfig, upstream: Upstream, tmp_path: Path
) -> None:
    config = big_mirror(tmp_path, devpi, upstream, nginx)
    big = wheel_path(config, devpi, "gamma-1.0-py3-none-any.whl")
    plan = replace(plan_for(config, devpi_serverdir=devpi.serverdir), requests_per_client=3)
    page = f"{config.proxy.base_url}/{config.devpi.index}/+simple/delta/"
    with (
        WebServer(create_app(config), config.web.host, config.web.port),
        NginxProcess(nginx, plan),
    ):
        assert status_from("127.0.0.1", page) == 200
        with crowd("127.0.0.1", config.proxy.port, big, 3, 0):  # three slow downloads
            assert status_from("127.0.0.1", page) == 429
            assert status_from("127.0.0.2", page) == 200
        # Its slots come back once nginx has seen those downloads end.
        deadline = time.monotonic() + 15
        while status_from("127.0.0.1", page) == 429 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status_from("127.0.0.1", page) == 200
