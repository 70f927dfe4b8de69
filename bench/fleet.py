"""Bench: a fleet pulling from the mirror, through the entry point (nginx in front of devpi
and the web front) against a bare nginx serving the very same files, in one run.

    python -m bench.fleet [--clients 1,8,32,128] [--slow 200] [--installs 8]

Needs nginx (Debian's nginx-light) and curl, and reaches the real PyPI once: it syncs
tensorflow and tensorflow-hub for this host into a fresh mirror, then
  1. N clients fetch the way pip does (the simple page, then the wheel it links: the
     ~570 MB TensorFlow wheel) through the entry point, through devpi alone (as before
     the proxy; N <= 32, 128 takes minutes) and from a bare nginx (a static copy of the
     page, the same file from devpi's serverdir): aggregate MB/s, time to the last byte,
     errors;
  2. with --slow clients attached (curl at 1 MB/s each on the wheel, for 40 s): p50/p99
     of a simple page and of /healthz, through the entry point and without it;
  3. a ~200 MB model archive at 32 and 128 clients, entry point vs bare nginx;
  4. --installs real `pip install tensorflow tensorflow-hub` into fresh venvs at once,
     through the entry point: wall time.
Every load stays on 127.0.0.1 and stops by itself (curl --max-time).
"""

from __future__ import annotations

import argparse
import http.client
import os
import pwd
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from bench.common import write_mirror_config
from bench.hub_front import make_archive
from hub_cache.importer import import_model
from hub_cache.models import load_model
from mirror.core.config import Config, load_config
from mirror.core.storage import LocalStore, open_store
from mirror.devpi.server import DevpiProcess
from mirror.proxy.nginx import NginxProcess, nginx_binary, plan_for
from mirror.pypi.manifest import load_manifest
from testkit.servers import clean_pip_env, free_port, make_venv

HANDLE = "https://tfhub.dev/google/bench-fleet/1"
SLOW_SECONDS = 40


@dataclass
class Load:
    clients: int
    wall: float
    bytes: int
    errors: int

    @property
    def mb_s(self) -> float:
        return self.bytes / self.wall / 1e6


def curl_many(urls: list[str], parallel: int, *extra: str) -> list[tuple[int, int]]:
    """Fetch every URL (to /dev/null) at most `parallel` at a time: (status, bytes) each."""
    cmd = ["curl", "-s", "--parallel", "--parallel-max", str(parallel), "--max-time", "600"]
    cmd += ["-w", "%{http_code} %{size_download}\\n", *extra]
    for url in urls:
        cmd += ["-o", "/dev/null", url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    rows = [line.split() for line in out.splitlines() if line.strip()]
    return [(int(code), int(size)) for code, size in rows]


def fetch_all(url: str, clients: int) -> Load:
    began = time.monotonic()
    done = curl_many([url] * clients, clients)
    wall = time.monotonic() - began
    errors = sum(code != 200 for code, _ in done) + clients - len(done)
    return Load(clients, wall, sum(size for _, size in done), errors)


def like_pip(page: str, file: str, clients: int) -> Load:
    """Each client: the simple page, then the file it links (two rounds of N at once)."""
    began = time.monotonic()
    pages = curl_many([page] * clients, clients)
    files = curl_many([file] * clients, clients)
    wall = time.monotonic() - began
    done = pages + files
    errors = sum(code != 200 for code, _ in done) + 2 * clients - len(done)
    return Load(clients, wall, sum(size for _, size in files), errors)


def best_like_pip(page: str, file: str, clients: int) -> Load:
    """Short runs are noisy: the best of three for a few clients."""
    tries = 3 if clients <= 8 else 1
    return max((like_pip(page, file, clients) for _ in range(tries)), key=lambda x: x.mb_s)


def latency(url: str, count: int = 100, accept: str = "text/html") -> tuple[float, float, int]:
    """p50 and p99 (ms) of `count` sequential fresh-connection GETs, and how many failed."""
    parts = urlsplit(url)
    times, errors = [], 0
    for _ in range(count):
        began = time.monotonic()
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
            conn.request("GET", parts.path, headers={"Accept": accept})
            resp = conn.getresponse()
            resp.read()
            errors += resp.status != 200
            conn.close()
        except OSError:
            errors += 1
        times.append((time.monotonic() - began) * 1000)
        time.sleep(0.02)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1], errors


@contextmanager
def slow_clients(url: str, count: int) -> Iterator[None]:
    """`count` downloads at 1 MB/s each, for SLOW_SECONDS at most, in the background."""
    cmd = ["curl", "-s", "--parallel", "--parallel-max", str(count), "--limit-rate", "1M"]
    cmd += ["--max-time", str(SLOW_SECONDS)]
    for _ in range(count):
        cmd += ["-o", "/dev/null", url]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)  # every client connected and transferring
        yield
    finally:
        proc.terminate()
        proc.wait()


def start_bare_nginx(
    stack: ExitStack, nginx: str, folder: Path, files_root: Path, page: Path, blob_root: Path
) -> str:
    """A plain nginx on the same files, the peer: devpi's files under the same paths, the
    page as a static file, the blobs under /blobs/."""
    port = free_port()
    folder.mkdir()
    conf = folder / "nginx.conf"
    # Like the entry point, its workers run as the user who owns the files.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    conf.write_text(f"""
{user}
worker_processes auto; pid {folder}/nginx.pid; error_log {folder}/error.log; daemon off;
events {{ worker_connections 8192; }}
http {{
    access_log off; sendfile on; tcp_nopush on; sendfile_max_chunk 1m;
    client_body_temp_path {folder}/b; proxy_temp_path {folder}/p; fastcgi_temp_path {folder}/f;
    uwsgi_temp_path {folder}/u; scgi_temp_path {folder}/s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {files_root};
        location = /page {{ alias {page}; }}
        location /blobs/ {{ alias {blob_root}/; }}
    }}
}}
""")
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(folder), "-e", f"{folder}/e.log"])
    stack.callback(lambda: (proc.terminate(), proc.wait()))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            break
        except OSError:
            time.sleep(0.05)
    return f"http://127.0.0.1:{port}"


def write_config(work: Path, nginx: str, requirements: list[str]) -> Path:
    return write_mirror_config(
        work, requirements, f'[proxy]\nnginx = "{nginx}"\nport = {free_port()}\n'
    )


def run_pip_installs(index: str, count: int, work: Path, requirements: list[str]) -> float:
    venvs = [make_venv(work / f"venv-{i}") for i in range(count)]
    results: list[int] = []

    def install(python: Path) -> None:
        pip = [str(python), "-m", "pip", "install", "-q", "--no-cache-dir", "--index-url", index]
        proc = subprocess.run([*pip, *requirements], env=clean_pip_env(), capture_output=True)
        results.append(proc.returncode)

    began = time.monotonic()
    threads = [threading.Thread(target=install, args=(v,)) for v in venvs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - began
    if any(results):
        print(f"  pip install failures: {sum(1 for r in results if r)} of {count}")
    return wall


def row(name: str, load: Load, peer: Load | None) -> str:
    ratio = f"  {load.mb_s / peer.mb_s:.2f}x of bare nginx" if peer else ""
    speed = f"{load.mb_s:>7.0f} MB/s  last byte {load.wall:>6.1f} s  errors {load.errors}"
    return f"  {name:<14} {load.clients:>4} clients  {speed}{ratio}"


@dataclass(frozen=True)
class WheelUrls:
    """The biggest wheel of the sync, where each server under test offers it."""

    filename: str
    size: int
    page_url: str  # its simple page, through the entry point
    file_url: str  # the wheel, through the entry point
    file_path: str  # the wheel's path, the same on devpi and on the bare nginx
    bare: str  # the bare nginx's base URL
    devpi_page: str
    devpi_file: str


def start_fleet(stack: ExitStack, work: Path, nginx: str, requirements: list[str]) -> Config:
    """A fresh mirror with front, devpi and nginx running, synced and holding one model."""
    config_path = write_config(work, nginx, requirements)
    config: Config = load_config(str(config_path))
    front = subprocess.Popen(
        [sys.executable, "-m", "tfmirror.cli", "--config", str(config_path), "serve"],
        stdout=subprocess.DEVNULL,
    )
    stack.callback(lambda: (front.terminate(), front.wait()))
    stack.enter_context(DevpiProcess(config.devpi))
    print("syncing", " ".join(requirements), "from PyPI ...", flush=True)
    sync = [sys.executable, "-m", "tfmirror.cli", "--config", str(config_path), "sync", "pypi"]
    synced = subprocess.run(sync, capture_output=True, text=True)
    if synced.returncode != 0:
        sys.exit(f"sync failed: {synced.stderr[-2000:]}")
    archive = work / "model.tar.gz"
    make_archive(archive, 200)
    import_model(local_store(config), archive, HANDLE, config.hub)
    stack.enter_context(NginxProcess(nginx, plan_for(config)))
    return config


def local_store(config: Config) -> LocalStore:
    store = open_store(config.storage)
    assert isinstance(store, LocalStore)
    return store


def biggest_wheel(stack: ExitStack, work: Path, nginx: str, config: Config) -> WheelUrls:
    """The synced wheel the loads fetch, and a bare nginx that serves a copy of its page."""
    store = local_store(config)
    assert config.devpi.serverdir is not None
    manifest = load_manifest(store, "default", config.pypi.targets[0].id)
    assert manifest is not None
    big = max(manifest.files, key=lambda w: w.size or 0)
    page_url = f"{config.proxy.base_url}/{config.devpi.index}/+simple/{big.project}/"
    html = subprocess.run(["curl", "-sf", page_url], capture_output=True, text=True).stdout
    link = re.search(rf'href="([^"]*{re.escape(big.filename)})', html)
    assert link is not None, html[:500]
    file_url = urljoin(page_url, link.group(1))
    file_path = urlsplit(file_url).path
    page_copy = work / "page.html"
    page_copy.write_text(html)
    blobs = store.root / "blobs" / "sha256"
    files = config.devpi.serverdir / "+files"
    bare = start_bare_nginx(stack, nginx, work / "bare", files, page_copy, blobs)
    return WheelUrls(
        big.filename,
        big.size or 0,
        page_url,
        file_url,
        file_path,
        bare,
        devpi_page=f"{config.devpi.index_url}{big.project}/",
        devpi_file=f"{config.devpi.url}{file_path}",
    )


def clients_like_pip(wheel: WheelUrls, counts: list[int]) -> tuple[Load, Load] | None:
    """Part 1; returns the entry point's and bare nginx's loads at the most clients."""
    print("\n1. clients fetching like pip (page, then the wheel it links)")
    at_most: tuple[Load, Load] | None = None
    bare_page, bare_file = f"{wheel.bare}/page", f"{wheel.bare}{wheel.file_path}"
    like_pip(bare_page, bare_file, 1)  # the wheel in the page cache
    for n in counts:
        peer = best_like_pip(bare_page, bare_file, n)
        ours = best_like_pip(wheel.page_url, wheel.file_url, n)
        print(row("bare nginx", peer, None))
        print(row("entry point", ours, peer))
        if n <= 32:
            print(row("devpi alone", best_like_pip(wheel.devpi_page, wheel.devpi_file, n), peer))
        if n == max(counts):
            at_most = (ours, peer)
    return at_most


def beside_slow_clients(config: Config, wheel: WheelUrls, slow: int) -> None:
    """Part 2: fresh requests while slow clients hold connections open."""
    print(f"\n2. {slow} slow clients (1 MB/s each) attached: fresh requests, 100 each")
    for name, base, page, held in (
        ("entry point", config.proxy.base_url, wheel.page_url, wheel.file_url),
        ("without nginx", config.web.base_url, wheel.devpi_page, wheel.devpi_file),
    ):
        with slow_clients(held, slow):
            p = latency(page)
            h = latency(f"{base}/healthz")
        pages = f"simple page p50 {p[0]:6.1f} ms  p99 {p[1]:7.1f} ms  errors {p[2]}"
        health = f"/healthz p50 {h[0]:6.1f} ms  p99 {h[1]:7.1f} ms  errors {h[2]}"
        print(f"  {name:<14} {pages};  {health}")


def model_archive(config: Config, wheel: WheelUrls) -> None:
    """Part 3: the model archive, entry point against bare nginx."""
    print("\n3. a 200 MB model archive")
    model = load_model(local_store(config), "google/bench-fleet/1")
    assert model is not None
    bare_blob = f"{wheel.bare}/blobs/{model.sha256[:2]}/{model.sha256}"
    hub_url = f"{config.proxy.base_url}/hub/google/bench-fleet/1?tf-hub-format=compressed"
    for n in (32, 128):
        peer = fetch_all(bare_blob, n)
        ours = fetch_all(hub_url, n)
        print(row("bare nginx", peer, None))
        print(row("entry point", ours, peer))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,8,32,128")
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--installs", type=int, default=8)
    parser.add_argument("--requirements", nargs="+", default=["tensorflow", "tensorflow-hub"])
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]

    with tempfile.TemporaryDirectory(prefix="tfmirror-fleet-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        nginx = nginx_binary("nginx")
        if nginx is None:
            sys.exit("needs nginx: apt-get install nginx-light")
        config = start_fleet(stack, work, nginx, args.requirements)
        wheel = biggest_wheel(stack, work, nginx, config)
        entry = config.proxy.base_url
        print(f"wheel: {wheel.filename}, {wheel.size / 1e6:.0f} MB; entry point {entry}")

        at_most = clients_like_pip(wheel, counts)
        beside_slow_clients(config, wheel, args.slow)
        model_archive(config, wheel)
        if args.installs:
            print(f"\n4. {args.installs} real pip installs at once through the entry point")
            wall = run_pip_installs(entry_index(config), args.installs, work, args.requirements)
            print(f"  pip install {' '.join(args.requirements)} x{args.installs}: {wall:.1f} s")

        if at_most is not None:
            ours, peer = at_most
            ratio = ours.mb_s / peer.mb_s
            print(
                f"\nat {ours.clients} clients: entry point {ratio:.2f}x of bare nginx "
                f"(target >= 0.9), errors {ours.errors}"
            )


def entry_index(config: Config) -> str:
    return f"{config.proxy.base_url}/{config.devpi.index}/+simple/"


if __name__ == "__main__":
    main()
