"""Bench: latency of /, /api/status and /metrics with 10,000 run records in the store.

Writes 10,000 real run records (5,000 per job, half of the hub ones failed, with errors)
plus a 34-wheel manifest and a few models into a fresh local store, starts
`tfmirror serve`, and loads each endpoint with wrk (Debian's package) at 20 concurrent
connections; prints p50 and p99 per endpoint.

    python -m bench.status_page [--records 10000] [--clients 20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from bench.common import wrk
from hub_cache.models import ModelManifest, save_model
from mirror.core.config import Target
from mirror.core.runs import RunRecord, record_keys
from mirror.core.storage import LocalStore
from mirror.pypi.manifest import Manifest, save_manifest
from mirror.pypi.resolve import Wheel
from testkit.servers import free_port

ENDPOINTS = ("/", "/api/status", "/metrics")


def fill(store: LocalStore, records: int) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(records):
        job = "pypi" if i % 2 == 0 else "hub"
        record = RunRecord(job, "schedule", start + timedelta(minutes=i), id=f"{i:08x}")
        failed = job == "hub" and i % 4 == 1
        errors = [{"name": f"model-{i}", "url": "https://tfhub.dev/x", "reason": "rejected"}]
        record.finish(
            store,
            not failed,
            {"new": 1, "skipped": 33, "failed": int(failed)},
            600_000_000,
            errors if failed else [],
        )
    wheels = [
        Wheel(
            f"project-{i}",
            "1.0",
            f"project_{i}-1.0-py3-none-any.whl",
            "https://files/x.whl",
            f"{i:064x}",
            10_000_000,
        )
        for i in range(34)
    ]
    save_manifest(
        store,
        Manifest(
            Target("3.11", "manylinux_2_28_x86_64"), ("tensorflow",), wheels, "2026-01-01T00:00:00Z"
        ),
    )
    for i in range(5):
        handle = f"https://tfhub.dev/google/m{i}/1"
        model = ModelManifest(handle, f"google/m{i}/1", f"{i:064x}", 100_000_000, "2026", "x")
        save_model(store, model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tfmirror-status-bench-") as tmp:
        work = Path(tmp)
        store = LocalStore(work / "store")
        fill(store, args.records)
        count = sum(len(record_keys(store, job)) for job in ("pypi", "hub"))
        port = free_port()
        config = work / "tfmirror.toml"
        config.write_text(
            f'[storage]\npath = "store"\n[web]\nport = {port}\n'
            '[devpi]\nurl = "http://127.0.0.1:9"\n'
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "tfmirror.cli", "--config", str(config), "serve"],
            stdout=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    requests.get(f"{base}/healthz", timeout=1)
                    break
                except requests.RequestException:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            print(
                f"{count} run records in the store; wrk, {args.clients} connections, "
                f"{args.seconds} s per endpoint"
            )
            for path in ENDPOINTS:
                wrk(base + path, args.clients, 1)  # warm-up
                p50, p99, done, errors = wrk(base + path, args.clients, args.seconds)
                print(
                    f"{path:12} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  {done / args.seconds:5.0f}"
                    f" req/s  non-2xx {errors}  (target p99 < 100 ms)"
                )
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
