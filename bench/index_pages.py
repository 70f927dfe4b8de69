"""Bench: which pages should the fleet's index-url serve? devpi's own, or the fronts'
(tfmirror.fleet_index), against a bare nginx serving a static copy of the same page.

    python -m bench.index_pages [--requirements tensorflow tensorflow-hub] [--clients 1,16,64]

Reaches the real PyPI once: it syncs the requirements for this host into a fresh mirror
(its own devpi and front on 127.0.0.1), then for each index
  1. what its PEP 691 JSON carries, file by file: upload-time, size, core-metadata hash,
     requires-python;
  2. whether `uv pip compile --exclude-newer <tomorrow>` resolves the requirements
     through it, how long it takes and what uv says;
  3. pages per second and p99 for N keep-alive connections (wrk) asking for the largest
     project's JSON page: devpi, the fronts, the entry point (nginx's page cache before
     the fronts), each as a ratio to the bare nginx.
The load stays on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import write_mirror_config, wrk
from mirror.core.config import load_config
from mirror.core.storage import open_store
from mirror.devpi.server import DevpiProcess
from mirror.proxy.nginx import NginxProcess, entry_point, nginx_binary, plan_for
from mirror.pypi.manifest import load_manifest
from mirror.pypi.resolve import uv_binary
from testkit.servers import clean_pip_env, free_port

PEP691 = "application/vnd.pypi.simple.v1+json"
SECONDS = 5


def fields(page: str) -> str:
    url = urlsplit(page)
    conn = http.client.HTTPConnection(url.netloc, timeout=30)
    conn.request("GET", url.path, headers={"Accept": PEP691})
    doc = json.loads(conn.getresponse().read())
    files = doc.get("files", [])

    def count(test: str) -> int:
        return sum(1 for f in files if _has(f, test))

    parts = [f"api-version {doc.get('meta', {}).get('api-version')}", f"{len(files)} files"]
    for key in ("upload-time", "size", "core-metadata", "requires-python"):
        parts.append(f"{key} {count(key)}")
    return ", ".join(parts)


def _has(entry: dict[str, object], key: str) -> bool:
    if key == "core-metadata":
        value = entry.get("core-metadata")
        return isinstance(value, dict) and "sha256" in value
    return entry.get(key) is not None


def uv_compile(index: str, requirements: list[str], work: Path) -> str:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    req = work / "bench.in"
    req.write_text("\n".join(requirements) + "\n")
    env = {
        **clean_pip_env(),
        "UV_NO_CONFIG": "1",
        "UV_CACHE_DIR": str(work / f"uv-cache-{time.monotonic_ns()}"),
    }
    cmd = [uv_binary(), "pip", "compile", "--quiet", "--no-header", "--default-index", index]
    cmd += ["--exclude-newer", tomorrow, str(req)]
    began = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    took = time.monotonic() - began
    if proc.returncode == 0:
        return f"resolves in {took:.1f} s"
    why = " ".join(proc.stderr.split())[:160]
    return f"REFUSED in {took:.1f} s: {why}"


def pages_per_second(page: str, clients: int) -> tuple[float, float, int]:
    """Pages/s, p99 ms and errors for `clients` keep-alive connections asking at once."""
    wrk(page, clients, 1, [f"Accept: {PEP691}"])  # warm-up (and nginx's page cache)
    _, p99, done, errors = wrk(page, clients, SECONDS, [f"Accept: {PEP691}"])
    return done / SECONDS, p99, errors


def bare_nginx(stack: ExitStack, nginx: str, work: Path, page_body: bytes) -> str:
    root = work / "bare"
    (root / "www").mkdir(parents=True)
    (root / "www" / "page").write_bytes(page_body)
    port = free_port()
    # As root, nginx's workers would run as nobody, who cannot enter our temporary folder.
    user = "user root;" if os.geteuid() == 0 else ""
    (root / "nginx.conf").write_text(f"""
{user}
worker_processes auto;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp; uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ root {root}/www; default_type {PEP691}; }}
    }}
}}
""")
    proc = subprocess.Popen(
        [nginx, "-p", str(root), "-c", str(root / "nginx.conf"), "-e", str(root / "error.log")]
    )
    stack.callback(lambda: (proc.terminate(), proc.wait()))
    time.sleep(0.5)
    return f"http://127.0.0.1:{port}/page"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", nargs="+", default=["tensorflow", "tensorflow-hub"])
    parser.add_argument("--clients", default="1,16,64")
    args = parser.parse_args()
    counts = [int(n) for n in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="tfmirror-bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        config_path = write_mirror_config(work, args.requirements)
        config = load_config(str(config_path))
        print("syncing", " ".join(args.requirements), "from PyPI ...", flush=True)
        sync = [sys.executable, "-m", "tfmirror.cli", "--config", str(config_path), "sync", "pypi"]
        synced = subprocess.run(sync, capture_output=True, text=True)
        if synced.returncode != 0:
            sys.exit(f"sync failed: {synced.stderr[-2000:]}")
        front = subprocess.Popen(
            [sys.executable, "-m", "tfmirror.cli", "--config", str(config_path), "serve"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(lambda: (front.terminate(), front.wait()))
        stack.enter_context(DevpiProcess(config.devpi))
        time.sleep(2)
        manifest = load_manifest(open_store(config.storage), "default", config.pypi.targets[0].id)
        assert manifest is not None
        project = max(manifest.files, key=lambda w: w.size or 0).project
        indexes = {
            "devpi 6.20.3": config.devpi.index_url,
            "fronts' pages": entry_point(config, proxied=False).index_url,
        }
        print(f"\n1. what the PEP 691 JSON of {project} carries")
        for name, index in indexes.items():
            print(f"  {name:<14} {fields(index + project + '/')}")
        print(f"\n2. uv pip compile --exclude-newer <tomorrow> {' '.join(args.requirements)}")
        for name, index in indexes.items():
            print(f"  {name:<14} {uv_compile(index, args.requirements, work)}")
        nginx = nginx_binary("nginx")
        if not (nginx and shutil.which("wrk")):
            sys.exit("3. needs nginx and wrk: apt-get install nginx-light wrk")
        print(f"\n3. {project}'s JSON page, wrk for {SECONDS} s (keep-alive connections)")
        page = indexes["fronts' pages"] + project + "/"
        conn = http.client.HTTPConnection(urlsplit(page).netloc)
        conn.request("GET", urlsplit(page).path, headers={"Accept": PEP691})
        peer_url = bare_nginx(stack, nginx, work, conn.getresponse().read())
        # The production shape: nginx's page cache in front of the fronts' pages.
        proxied = replace(config, proxy=replace(config.proxy, nginx=nginx, port=free_port()))
        stack.enter_context(NginxProcess(nginx, plan_for(proxied)))
        time.sleep(0.5)
        targets = {**indexes, "entry point": entry_point(proxied, proxied=True).index_url}
        for n in counts:
            peer, peer_p99, _ = pages_per_second(peer_url, n)
            print(
                f"  {n:>3} clients  {'bare nginx':<14} {peer:8.0f} pages/s  p99 {peer_p99:6.1f} ms"
            )
            for name, index in targets.items():
                rate, p99, errors = pages_per_second(index + project + "/", n)
                print(
                    f"  {n:>3} clients  {name:<14} {rate:8.0f} pages/s  p99 {p99:6.1f} ms  "
                    f"errors {errors}  {rate / peer:.3f}x of bare nginx"
                )


if __name__ == "__main__":
    main()
