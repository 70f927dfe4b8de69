"""Bench: serving a ~200 MB model archive through the web front (`tfmirror serve`).

In one run:
  1. throughput of one download through the front (curl) vs reading the same blob file
     (dd), both from disk (page cache dropped first; needs root) and both from cache,
     for `tfmirror serve` (waitress) and `tfmirror serve --workers 2` (gunicorn); beside
     them a bare HTTP responder that sendfile()s the blob: what loopback and curl allow;
  2. 32 concurrent downloads through the front: errors, p50 and p99 latency (curl);
  3. the front's peak RSS while serving a 20 MB and a 200 MB archive, to show it does
     not grow with the archive's size.

    python -m bench.hub_front [--size-mb 200]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import drop_caches
from hub_cache.importer import import_model
from mirror.core.config import parse_config
from mirror.core.storage import LocalStore
from testkit.servers import free_port

CONCURRENT = 32
RUNS = 5


def make_archive(path: Path, size_mb: int) -> None:
    """A SavedModel-shaped tar.gz whose variables are incompressible, like real weights."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name in (".", "./variables"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in (
            ("./saved_model.pb", b"\x08\x01bench-graph"),
            ("./variables/variables.index", b"index"),
            ("./variables/variables.data-00000-of-00001", os.urandom(size_mb << 20)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# Both peers are timed by their own clocks (dd's "copied, N s", curl's time_total), so
# neither pays for starting its process: after a dropped cache that means loading curl's
# TLS libraries from disk, which is not the archive coming off the disk.
def dd_read(path: Path) -> float:
    done = subprocess.run(
        ["dd", f"if={path}", "of=/dev/null", "bs=1M"], check=True, capture_output=True, text=True
    )
    return float(re.search(r"copied, ([0-9.e-]+) s", done.stderr).group(1))  # type: ignore[union-attr]


def curl_get(url: str) -> float:
    done = subprocess.run(
        ["curl", "-sf", "-o", "/dev/null", "-w", "%{time_total}", url],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(done.stdout)


def curl_parallel(url: str, count: int) -> tuple[list[float], int]:
    cmd = [
        "curl",
        "-s",
        "--parallel",
        "--parallel-max",
        str(count),
        "-w",
        "%{http_code} %{size_download} %{time_total}\\n",
    ]
    for _ in range(count):
        cmd += ["-o", "/dev/null", url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    times, errors = [], 0
    for line in out.split("\n"):
        if not line.strip():
            continue
        code, _, seconds = line.split()
        errors += code != "200"
        times.append(float(seconds))
    return times, errors + (count - len(times))


class RssWatch:
    """Samples a process's resident set size (VmRSS) until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            kb = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS")))
            self.peak = max(self.peak, kb)
            time.sleep(0.02)

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    url: str
    blob: Path

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def serve(work: Path, size_mb: int, *serve_args: str) -> Served:
    """Imports a model of `size_mb` into a store (once) and starts `tfmirror serve` on it."""
    store_dir = work / f"store-{size_mb}"
    port = free_port()
    config_path = work / f"tfmirror-{size_mb}.toml"
    config_path.write_text(f'[storage]\npath = "{store_dir}"\n[web]\nport = {port}\n')
    archive = work / f"model-{size_mb}.tar.gz"
    if not archive.exists():
        make_archive(archive, size_mb)
        config = parse_config({"storage": {"path": str(store_dir)}}, work)
        handle = f"https://tfhub.dev/bench/model-{size_mb}/1"
        outcome = import_model(LocalStore(store_dir), archive, handle, config.hub)
        assert outcome.status == "new", outcome.reason
    blob = next(store_dir.glob("blobs/sha256/*/*"))
    cli = [sys.executable, "-m", "tfmirror.cli", "--config", str(config_path), "serve", *serve_args]
    proc = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/hub/bench/model-{size_mb}/1?tf-hub-format=compressed"
    deadline = time.monotonic() + 30
    while subprocess.run(["curl", "-sf", "-o", "/dev/null", "-I", url]).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit("tfmirror serve did not start")
        time.sleep(0.2)
    return Served(proc, url, blob)


class SendfileServer:
    """The peer for the socket path: a bare HTTP responder that sendfile()s the blob."""

    def __init__(self, blob: Path) -> None:
        self.blob = blob
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/blob"
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        size = self.blob.stat().st_size
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, self.blob.open("rb") as source:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size
                )
                conn.sendfile(source)

    def close(self) -> None:
        self.sock.close()


def best_of(runs: int, measure: Callable[[], float], cold: bool) -> float:
    """The fastest of `runs`, each from a cold cache if `cold`: one hiccup must not decide."""
    return min((drop_caches() if cold else True) and measure() for _ in range(runs))


def throughput(served: Served, name: str) -> list[str]:
    size = served.blob.stat().st_size
    out = []
    peer = SendfileServer(served.blob)
    try:
        colds = [True] if drop_caches() else []
        if not colds:
            out.append("(not root: cannot drop the page cache; cached figures only)")
        dd_read(served.blob)  # for the cached row, when there is no cold one before it
        for cold in [*colds, False]:
            label = "from disk (cache dropped)" if cold else "from page cache"
            disk = best_of(RUNS, lambda: dd_read(served.blob), cold)
            front = best_of(RUNS, lambda: curl_get(served.url), cold)
            raw = best_of(RUNS, lambda: curl_get(peer.url), cold)
            # The target is against the disk; from cache, loopback and curl set the pace.
            note = "(target >= 0.7)" if cold else "(bound by loopback + curl)"
            out.append(
                f"{name}: {label:26} dd {size / disk / 1e6:5.0f} MB/s, front "
                f"{size / front / 1e6:5.0f} MB/s, ratio {disk / front:.2f}x {note}; "
                f"bare sendfile server {size / raw / 1e6:5.0f} MB/s ({disk / raw:.2f}x)"
            )
    finally:
        peer.close()
    return out


def concurrent(served: Served) -> tuple[str, int]:
    """32 parallel downloads; returns the line to print and the front's peak RSS (kB)."""
    with RssWatch(served.proc.pid) as rss:
        times, errors = curl_parallel(served.url, CONCURRENT)
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    size = served.blob.stat().st_size
    line = (
        f"{CONCURRENT} concurrent downloads of {size / 1e6:.0f} MB: {errors} errors, "
        f"p50 {statistics.median(times):.2f} s, p99 {p99:.2f} s"
    )
    return line, rss.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    args = parser.parse_args()
    lines = []
    with tempfile.TemporaryDirectory(prefix="tfmirror-hub-bench-") as tmp:
        peaks = {}
        for size_mb in (20, args.size_mb):
            served = serve(Path(tmp), size_mb)
            try:
                if size_mb == args.size_mb:
                    lines += throughput(served, "serve")
                line, peaks[size_mb] = concurrent(served)
                lines.append(line)
            finally:
                served.stop()
        # The production setting (docker-compose): gunicorn workers, files via sendfile().
        served = serve(Path(tmp), args.size_mb, "--workers", "2")
        try:
            lines += throughput(served, "serve --workers 2")
            lines.append("serve --workers 2: " + concurrent(served)[0])
        finally:
            served.stop()
    lines.append(
        "front peak RSS while serving: "
        + ", ".join(f"{peaks[mb] / 1024:.0f} MB for a {mb} MB model" for mb in peaks)
        + " (should not grow with the size)"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
