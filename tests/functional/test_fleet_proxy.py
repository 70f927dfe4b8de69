"""The fleet entry point: Debian's nginx in front of a real devpi-server and the web front.

pip and uv install through it, tensorflow_hub loads through it, it keeps serving pip
with the front stopped, and 200 slow plus 200 idle clients leave a fresh request
answered, through nginx and (tuned) without it. Two fronts on one S3 store sit behind it.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from hub_cache.importer import import_model
from mirror.core.config import Config, DevpiConfig, parse_config
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from mirror.proxy.nginx import NginxProcess, entry_point, plan_for
from testkit.mirror_env import make_config
from testkit.servers import MotoServer, clean_pip_env, free_port, make_venv, pip_install
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.functional.test_hub import load_outputs
from tests.functional.test_pypi_sync import sync
from tests.support.archives import FAKE_MODEL, tar_bytes, tar_of_dir
from tfmirror.app import create_app

TFHUB_KERAS = "https://tfhub.dev/google/tfmirror-test/keras/1"
BIG = 24 * 1024 * 1024  # past the loopback socket buffers, so a client that stops reading
# really holds the server's side of the transfer


def with_proxy(config: Config, nginx: str, **proxy: Any) -> Config:
    """The test config with a [proxy] on a free port, in the test's own folder."""
    from dataclasses import replace

    fields = {"nginx": nginx, "port": free_port(), "workdir": config.storage.path.parent / "px"}
    return replace(config, proxy=replace(config.proxy, **{**fields, **proxy}))


@contextmanager
def entry(config: Config, devpi: DevpiConfig) -> Iterator[str]:
    """The web front and nginx for `config`, devpi's files sent from its serverdir."""
    plan = plan_for(config, devpi_serverdir=devpi.serverdir)
    with ExitStack() as stack:
        stack.enter_context(WebServer(create_app(config), config.web.host, config.web.port))
        stack.enter_context(NginxProcess(config.proxy.nginx, plan))
        yield config.proxy.base_url


def test_pip_and_uv_install_through_the_entry_point_and_the_front_may_stop(
    nginx: str, devpi: DevpiConfig, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0", noise=300_000))
    config = with_proxy(make_config(tmp_path, upstream.index_url, devpi, ["alpha"]), nginx)
    report, _ = sync(config)
    assert report.ok, report.failures
    index = entry_point(config).index_url
    assert index == f"{config.proxy.base_url}/{config.devpi.index}/+simple/"

    with entry(config, devpi) as base:
        # pip reads the HTML page, uv the PEP 691 JSON: both are cached by nginx, apart.
        html = requests.get(f"{index}beta/", timeout=10)
        json_page = requests.get(
            f"{index}beta/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=10
        )
        assert html.headers["Content-Type"].startswith("application/vnd.pypi.simple.v1+html")
        assert json_page.headers["Content-Type"].startswith("application/vnd.pypi.simple.v1+json")
        again = requests.get(f"{index}beta/", timeout=10)
        assert again.headers["X-Cache-Status"] == "HIT" and again.text == html.text

        # The wheel nginx sends is the file devpi holds, byte for byte, sent from disk.
        link = re.search(r'href="([^"]+beta-1\.0[^"#]+)', html.text)
        assert link is not None, html.text
        wheel_url = requests.compat.urljoin(html.url, link.group(1))
        wheel = requests.get(wheel_url, timeout=10)
        assert wheel.status_code == 200
        # This index's own file (the session's devpi holds other tests' beta-1.0 too).
        held = devpi.serverdir / "+files" / urlsplit(wheel_url).path.lstrip("/")
        assert hashlib.sha256(wheel.content).digest() == hashlib.sha256(held.read_bytes()).digest()
        assert "max-age=315360000" in wheel.headers["Cache-Control"], "not sent by nginx"

        venv = make_venv(tmp_path / "pip-venv")
        pip = pip_install(venv, index, "alpha")
        assert pip.returncode == 0, pip.stderr

        uv_venv = make_venv(tmp_path / "uv-venv")
        env = {**clean_pip_env(), "UV_DEFAULT_INDEX": index, "UV_NO_CONFIG": "1"}
        env.pop("UV_INDEX_URL", None)
        uv_install = ["uv", "pip", "install", "--no-cache", "--python", str(uv_venv), "alpha"]
        uv = subprocess.run(uv_install, capture_output=True, text=True, env=env, timeout=120)
        assert uv.returncode == 0, uv.stderr
        assert base.endswith(str(config.proxy.port))

    # nginx alone again, with no web front and no cached page: pip installs from
    # devpi's own pages.
    plan = plan_for(config, devpi_serverdir=devpi.serverdir)
    shutil.rmtree(plan.workdir / "page-cache", ignore_errors=True)
    with NginxProcess(nginx, plan):
        assert requests.get(f"{config.proxy.base_url}/healthz", timeout=10).status_code == 502
        pip = pip_install(make_venv(tmp_path / "venv-2"), index, "alpha")
        assert pip.returncode == 0, pip.stderr


def test_the_fleet_installs_a_committed_closure_that_devpi_does_not_hold_even_with_devpi_down(
    nginx: str, devpi: DevpiConfig, upstream: Upstream, tmp_path: Path
) -> None:
    # Before, a file devpi did not hold yet went to devpi: a node asking between the
    # commit and the end of devpi's pull waited on it, and with devpi down got a 502.
    from dataclasses import replace

    from mirror.pypi.sync import PypiSync

    upstream.add(WheelSpec("fleet-first", "1.0", requires=["fleet-second"]))
    upstream.add(WheelSpec("fleet-second", "1.0", noise=300_000))
    config = with_proxy(make_config(tmp_path, upstream.index_url, devpi, ["fleet-first"]), nginx)
    store = open_store(config.storage)
    assert PypiSync(config, store, None).run().ok  # committed; devpi was never told
    gone = replace(config.devpi, url=f"http://127.0.0.1:{free_port()}")  # nobody listens
    config = replace(config, devpi=gone)
    empty = tmp_path / "devpi-holds-nothing"
    empty.mkdir()
    plan = plan_for(config, devpi_serverdir=empty)
    index = entry_point(config).index_url
    with (
        WebServer(create_app(config), config.web.host, config.web.port),
        NginxProcess(config.proxy.nginx, plan),
    ):
        page = requests.get(f"{index}fleet-second/", timeout=10)
        link = re.search(r'href="([^"]+fleet_second-1\.0[^"#]+)', page.text)
        assert link is not None, page.text
        wheel = requests.get(requests.compat.urljoin(page.url, link.group(1)), timeout=10)
        sha = upstream.files["fleet_second-1.0-py3-none-any.whl"].sha256
        assert wheel.status_code == 200 and hashlib.sha256(wheel.content).hexdigest() == sha
        ranged = requests.get(wheel.url, headers={"Range": "bytes=0-9"}, timeout=10)
        assert ranged.status_code == 206 and ranged.content == wheel.content[:10]
        pip = pip_install(make_venv(tmp_path / "venv"), index, "fleet-first")
        assert pip.returncode == 0, pip.stderr
        unknown = wheel.url.replace("fleet_second-1.0", "fleet_second-9.0")
        assert requests.get(unknown, timeout=10).status_code == 404


def test_models_load_through_the_entry_point_with_range_head_and_etag(
    nginx: str,
    devpi: DevpiConfig,
    saved_models: tuple[Path, dict[str, Any]],
    upstream: Upstream,
    tmp_path: Path,
) -> None:
    from tests.functional.test_hub import assert_same_outputs

    models_dir, expected = saved_models
    config = with_proxy(make_config(tmp_path, upstream.index_url, devpi, ["alpha"]), nginx)
    tarball = tmp_path / "keras.tar.gz"
    tarball.write_bytes(tar_of_dir(models_dir / "keras"))
    store = open_store(config.storage)
    imported = import_model(store, tarball, TFHUB_KERAS, config.hub)
    assert imported.status == "new", imported.reason
    data = tarball.read_bytes()
    sha = hashlib.sha256(data).hexdigest()

    with entry(config, devpi) as base:
        url = f"{base}/hub/google/tfmirror-test/keras/1?tf-hub-format=compressed"
        whole = requests.get(url, timeout=30)
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["ETag"] == f'"{sha}"'
        assert whole.headers["Content-Length"] == str(len(data))
        part = requests.get(url, headers={"Range": "bytes=10-99"}, timeout=30)
        assert part.status_code == 206 and part.content == data[10:100]
        assert part.headers["Content-Range"] == f"bytes 10-99/{len(data)}"
        head = requests.head(url, timeout=30)
        assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
        cached = requests.get(url, headers={"If-None-Match": f'"{sha}"'}, timeout=30)
        assert cached.status_code == 304 and not cached.content
        # The page's snippets name the entry point the node used, not the front behind it.
        info = requests.get(
            f"{base}/hub/google/tfmirror-test/keras/1",
            headers={"Accept": "application/json"},
            timeout=30,
        ).json()
        assert info["mirror_handle"] == f"{base}/hub/google/tfmirror-test/keras/1"

        got = load_outputs(info["mirror_handle"], "keras", tmp_path / "cache")
        assert_same_outputs(got, expected["keras"])


@contextmanager
def crowd(host: str, port: int, path: str, slow: int, idle: int) -> Iterator[None]:
    """`slow` clients that asked for `path` and read nothing more after the first bytes,
    and `idle` ones that sent half a request line: held open, closed on exit."""
    socks: list[socket.socket] = []
    try:
        for _ in range(slow):
            sock = socket.create_connection((host, port), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            socks.append(sock)
        for _ in range(idle):
            sock = socket.create_connection((host, port), timeout=10)
            sock.sendall(b"GET /healthz HT")
            socks.append(sock)
        for sock in socks[:slow]:
            sock.recv(1024)  # the transfer has begun: the server is holding it
        yield
    finally:
        for sock in socks:
            sock.close()


def answers_within(url: str, seconds: float, **headers: str) -> float:
    start = time.monotonic()
    resp = requests.get(url, headers=headers, timeout=seconds)
    assert resp.status_code == 200, (url, resp.status_code)
    return time.monotonic() - start


def big_mirror(tmp_path: Path, devpi: DevpiConfig, upstream: Upstream, nginx: str) -> Config:
    upstream.add(WheelSpec("gamma", "1.0", noise=BIG))
    upstream.add(WheelSpec("delta", "1.0"))
    config = with_proxy(make_config(tmp_path, upstream.index_url, devpi, ["gamma", "delta"]), nginx)
    report, _ = sync(config)
    assert report.ok, report.failures
    return config


def wheel_path(config: Config, devpi: DevpiConfig, name: str) -> str:
    held = next((devpi.serverdir / "+files" / config.devpi.index).rglob(name))
    return "/" + str(held.relative_to(devpi.serverdir / "+files"))


def test_slow_and_idle_clients_starve_nobody_through_the_entry_point(
    nginx: str, devpi: DevpiConfig, upstream: Upstream, tmp_path: Path
) -> None:
    config = big_mirror(tmp_path, devpi, upstream, nginx)
    big = wheel_path(config, devpi, "gamma-1.0-py3-none-any.whl")
    with entry(config, devpi) as base, crowd("127.0.0.1", config.proxy.port, big, 200, 200):
        page = f"{base}/{config.devpi.index}/+simple/delta/"
        answers_within(page, 5)
        answers_within(page, 5, Accept="application/vnd.pypi.simple.v1+json")
        answers_within(f"{base}/healthz", 5)
        answers_within(f"{base}{big}", 30)  # a new download of the very same file


def test_without_nginx_devpi_and_the_front_hold_slow_and_idle_clients(
    devpi: DevpiConfig, upstream: Upstream, tmp_path: Path, nginx: str
) -> None:
    config = big_mirror(tmp_path, devpi, upstream, nginx)
    big = wheel_path(config, devpi, "gamma-1.0-py3-none-any.whl")
    host, port = devpi.host_port
    with (
        WebServer(create_app(config), config.web.host, config.web.port),
        crowd(host, port, big, 200, 200),
        crowd(config.web.host, config.web.port, "/healthz", 0, 200),
    ):
        answers_within(f"{config.devpi.index_url}delta/", 10)
        answers_within(f"{config.web.base_url}/healthz", 10)


def test_two_fronts_on_one_s3_store_behind_the_proxy(
    nginx: str, devpi: DevpiConfig, moto: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    storage = {"backend": "s3", "bucket": s3_bucket, "endpoint_url": moto.url}
    config = parse_config(
        {
            "storage": storage,
            "devpi": {"url": devpi.url, "index": "fleet/two", "serverdir": ""},
            "web": {"port": ports[0]},
            "proxy": {
                "nginx": nginx,
                "port": free_port(),
                "workdir": str(tmp_path / "px"),
                "fronts": [f"http://127.0.0.1:{p}" for p in ports],
            },
        },
        tmp_path,
    )
    model = tmp_path / "model.tar"
    model.write_bytes(tar_bytes(FAKE_MODEL))
    handle = "https://tfhub.dev/google/two-fronts/1"
    assert import_model(open_store(config.storage), model, handle, config.hub).status == "new"
    url = f"{config.proxy.base_url}/hub/google/two-fronts/1?tf-hub-format=compressed"
    fronts = [
        WebServer(create_app(config, open_store(config.storage)), "127.0.0.1", p) for p in ports
    ]
    with NginxProcess(nginx, plan_for(config)), fronts[1]:
        with fronts[0]:
            for _ in range(4):
                got = requests.get(url, timeout=10)
                assert got.status_code == 200 and got.content == model.read_bytes()
        # One front has gone away: the other answers every request.
        for _ in range(4):
            assert requests.get(url, timeout=10).content == model.read_bytes()
            assert requests.get(f"{config.proxy.base_url}/api/status", timeout=10).ok
    # nginx has stopped and flushed its log: both fronts served the archive.
    log = (tmp_path / "px" / "access.log").read_text()
    archive = re.compile(
        r'two-fronts/1\?tf-hub-format=compressed HTTP/1.1" 200 .* upstream=([\d.:]+)'
    )
    served = set(archive.findall(log))
    assert served == {f"127.0.0.1:{p}" for p in ports}, log


def test_print_config_is_a_config_nginx_accepts_and_no_nginx_is_exit_2(
    nginx: str, tmp_path: Path
) -> None:
    from tests.functional.test_cli import tfmirror

    config = tmp_path / "tfmirror.toml"
    config.write_text(f'[proxy]\nnginx = "{tmp_path / "none"}"\nworkdir = "px"\n')
    printed = tfmirror(config, "proxy", "--print-config", "--port", "8123")
    assert printed.returncode == 0, printed.stderr
    conf = tmp_path / "nginx.conf"
    conf.write_text(printed.stdout)
    # The printed config answers /healthz/proxy with the workdir's instance id, made now.
    assert "ok " + (tmp_path / "px" / "instance-id").read_text().strip() in printed.stdout
    check = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path / "px"), "-c", str(conf), "-e", str(tmp_path / "e.log")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert "listen 127.0.0.1:8123" in printed.stdout

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        config.write_text(f'[proxy]\nnginx = "{nginx}"\nworkdir = "px"\n')
        busy = tfmirror(config, "proxy", "--port", port, timeout=60)
    assert busy.returncode == 1
    assert busy.stderr.strip().splitlines() == [
        f"tfmirror: proxy: nginx exited at start: bind() to 127.0.0.1:{port} failed "
        "(98: Address already in use)"
    ]

    config.write_text(f'[proxy]\nnginx = "{tmp_path / "none"}"\nworkdir = "px"\n')
    missing = tfmirror(config, "proxy")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"tfmirror: error: {tmp_path / 'none'} not found: install Debian's nginx-light "
        "(apt-get install nginx-light) or set [proxy] nginx"
    ]


def test_devpis_state_is_not_shown_and_its_login_is_rate_limited(
    nginx: str, devpi: DevpiConfig, upstream: Upstream, tmp_path: Path
) -> None:
    config = with_proxy(make_config(tmp_path, upstream.index_url, devpi, ["alpha"]), nginx)
    with entry(config, devpi) as base:
        assert requests.get(f"{devpi.url}/+status", timeout=10).status_code == 200  # its own port
        status = requests.get(f"{base}/+status", headers={"Accept": "application/json"}, timeout=10)
        assert status.status_code == 404 and "serverdir" not in status.text
        assert requests.get(f"{base}/+api", timeout=10).status_code == 200  # devpi-client's

        # All at once, as a guesser would: one after another, each login's password hash
        # took over a second on a loaded machine and the limit refilled in between.
        def guess(n: int) -> int:
            answer = requests.post(
                f"{base}/+login", json={"user": "root", "password": f"guess-{n}"}, timeout=60
            )
            return answer.status_code

        with ThreadPoolExecutor(30) as pool:
            guesses = list(pool.map(guess, range(30)))
        assert guesses.count(429) >= 15, guesses
        assert set(guesses) <= {401, 429}, guesses
