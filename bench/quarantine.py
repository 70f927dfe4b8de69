"""Bench: how long `tfmirror quarantine add` and `remove` take on a small default-layout
mirror (a synced store with its own devpi, as `tfmirror up` makes it), with devpi down
and with `tfmirror up` running.

A local upstream serves a closure of twelve wheels (one of 100 MB); `tfmirror sync pypi`
mirrors it; then each command runs from a cold process, timed by the wall clock. The
peer is `tfmirror quarantine list` in the same state: the floor of any command
(Python's start, the imports, the store). Target: under 2 s.

    python -m bench.quarantine [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import run_tfmirror
from testkit.mirror_env import operator_config
from testkit.servers import read_banner
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec

DEPS = [f"dep{i}" for i in range(10)]


def tfmirror(config: Path, *args: str) -> tuple[float, str]:
    seconds, done = run_tfmirror(config, *args)
    if done.returncode != 0:
        raise SystemExit(f"tfmirror {' '.join(args)} failed: {done.stderr[-2000:]}")
    return seconds, done.stdout


def waited(said: str) -> float | None:
    """The seconds the command says it waited on devpi (`... done (0.1 s)`)."""
    found = re.search(r"\.\.\. done \(([0-9.]+) s\)", said)
    return float(found.group(1)) if found else None


def one_state(config: Path, rounds: int, say: Callable[[str], None]) -> None:
    times: dict[str, list[float]] = {"list": [], "add": [], "add again": [], "remove": []}
    on_devpi: list[float] = []
    last = ""
    for i in range(rounds):
        times["list"].append(tfmirror(config, "quarantine", "list")[0])
        for name, args in (
            ("add", ["add", "beta==1.0", "--reason", "bench"]),
            ("add again", ["add", f"dep{i}", "--reason", "bench"]),
            ("remove", ["remove", "beta==1.0"]),
        ):
            seconds, last = tfmirror(config, "quarantine", *args)
            times[name].append(seconds)
            if (wait := waited(last)) is not None:
                on_devpi.append(wait)
        tfmirror(config, "quarantine", "remove", f"dep{i}")
    floor = statistics.median(times["list"])
    for name, got in times.items():
        median = statistics.median(got)
        spread = f"{min(got):.2f}-{max(got):.2f}"
        say(f"  {name:<10} median {median:5.2f} s ({spread})  {median / floor:4.1f}x list")
    if on_devpi:
        say(f"  of which waiting on devpi: median {statistics.median(on_devpi):.2f} s")
    say(f"  (remove said: {last.strip().splitlines()[-1]})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("TFMIRROR_DEVPI_PASSWORD", "bench")
    with tempfile.TemporaryDirectory() as tmp, Upstream() as upstream:
        work = Path(tmp)
        os.environ["UV_CACHE_DIR"] = str(work / "uv-cache")
        upstream.add(WheelSpec("alpha", "1.0", requires=["beta", *DEPS]))
        upstream.add(WheelSpec("beta", "1.0", noise=100_000_000))
        for name in DEPS:
            upstream.add(WheelSpec(name, "1.0"))
        config = operator_config(
            work, upstream.index_url, ["alpha"], extra="[proxy]\nenabled = false\n"
        )
        tfmirror(config, "sync", "pypi")
        print("devpi down (no `tfmirror up`):")
        one_state(config, args.rounds, print)
        up = subprocess.Popen(
            [sys.executable, "-m", "tfmirror.cli", "--config", str(config), "up"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            if "entry point:" not in read_banner(up, 300):
                raise SystemExit("`tfmirror up` did not start")
            time.sleep(5)  # its startup verify and gc
            print("`tfmirror up` running:")
            one_state(config, args.rounds, print)
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(60)


if __name__ == "__main__":
    main()
