"""Helpers the benches share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from testkit.servers import free_port


def drop_caches() -> bool:
    """Empty the page cache so the next read comes from disk (root only)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def settle() -> None:
    """Start a timed run from the same machine state whichever ran before it: every dirty
    page written back (devpi never fsyncs its files), the page cache emptied (root only),
    and a pause. Measured without it, whichever of tfmirror and pip ran second in a round
    took 0.5-1 s longer: this VM hands out memory that was freed a moment ago several
    times faster than memory it has to fault in from the host (ext4 writes of 572 MB:
    0.13-0.44 s into recycled pages, 1.1-1.45 s into fresh ones)."""
    drop_caches()
    time.sleep(3)


def write_mirror_config(work: Path, requirements: Sequence[str], extra: str = "") -> Path:
    """A fresh mirror's config under `work` (store in work/data, its own devpi and front
    on free ports); `extra` is more TOML: [pypi] keys, then tables. No requirements:
    none at the top level (a config of environments only)."""
    path = work / "tfmirror.toml"
    reqs = ", ".join(json.dumps(r) for r in requirements)
    top = f"requirements = [{reqs}]\n" if requirements else ""
    path.write_text(f"""
[storage]
path = "data"
[devpi]
url = "http://127.0.0.1:{free_port()}"
[web]
port = {free_port()}
[pypi]
{top}{extra}""")
    return path


def wrk(
    url: str, clients: int, seconds: int, headers: Sequence[str] = ()
) -> tuple[float, float, int, int]:
    """wrk (C, epoll) as the load: a Python client would eat the two cores it measures.
    Returns p50 and p99 in ms, requests done, and non-2xx/3xx answers."""
    extra = [arg for header in headers for arg in ("-H", header)]
    out = subprocess.run(
        ["wrk", f"-t{min(2, clients)}", f"-c{clients}", f"-d{seconds}s", "--latency", *extra, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    percent = {}
    for line in out.split("Latency Distribution")[1].splitlines()[1:5]:
        label, value = line.split()
        percent[label] = _ms(value)
    requests_done = int(out.split(" requests in ")[0].split()[-1])
    errors = 0
    if "Non-2xx or 3xx responses:" in out:
        errors = int(out.split("Non-2xx or 3xx responses:")[1].split()[0])
    return percent["50%"], percent["99%"], requests_done, errors


def _ms(value: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * factor
    raise ValueError(value)


def run_tfmirror(config: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    """`tfmirror --config CONFIG ARGS` as a cold process: its wall time and what it said."""
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tfmirror.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    return time.monotonic() - began, done
