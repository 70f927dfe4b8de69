"""Bench: mirror the TensorFlow closure for one target from live PyPI, against its peers.

In one run, on the same network and disk:
  1. a warm-up: every wheel once with curl (not counted), so all peers meet the same caches;
  2. per round (--rounds, default 3): tfmirror cold sync into an empty store and a fresh
     devpi (running, as beside `tfmirror up`) until devpi has committed every file, and
     `pip download` of the same requirements for the same target (it only downloads);
     rounds alternate which goes first, and each starts from an emptied page cache;
  3. in the first round also: the no-op resync, peak RSS, a raw `curl --parallel` of the
     same URLs, and with --install the pip install from devpi alone.
Prints wall times, tfmirror's time split, each round's ratio and the median ratio: this
machine's network and disk vary by tens of percent between minutes.

    python -m bench.pypi_sync [--rounds 3] [--install] [--python 3.11] [--platform ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import settle, write_mirror_config
from mirror.core.config import host_target, load_config
from mirror.core.runs import record_keys
from mirror.core.storage import LocalStore
from mirror.devpi.server import DevpiProcess
from mirror.pypi.manifest import load_all
from mirror.pypi.resolve import platforms_for
from testkit.servers import clean_pip_env

SYNC = """
import resource, sys
from tfmirror.cli import main
code = main(sys.argv[1:])
print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


def write_config(work: Path, args: argparse.Namespace) -> Path:
    return write_mirror_config(
        work,
        args.requirements,
        f'upstream = "{args.upstream}"\n'
        f'[[pypi.targets]]\npython = "{args.python}"\nplatform = "{args.platform}"\n',
    )


def timed_sync(config: Path) -> tuple[float, int, str]:
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", SYNC, "--config", str(config), "sync", "pypi"],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - began
    if proc.returncode != 0:
        sys.exit(f"tfmirror sync failed:\n{proc.stdout}\n{proc.stderr}")
    rss = int(proc.stdout.split("PEAK_RSS_KB")[1].split()[0])
    summary = next(ln for ln in proc.stdout.splitlines() if ln.startswith("pypi sync:"))
    return wall, rss, summary


def curl_parallel(urls: list[str], dest: Path | None) -> float:
    """Fetch the URLs 8 at a time into dest (None: discard the bytes)."""
    if dest is not None:
        dest.mkdir(parents=True, exist_ok=True)
    cmd = ["curl", "--silent", "--no-progress-meter", "--fail", "--parallel", "--parallel-max", "8"]
    for i, url in enumerate(urls):
        cmd += ["-o", str(dest / f"{i}.whl") if dest is not None else os.devnull, url]
    began = time.monotonic()
    subprocess.run(cmd, check=True)
    wall = time.monotonic() - began
    if dest is not None:
        shutil.rmtree(dest)
    return wall


def warm_up(args: argparse.Namespace) -> None:
    """Fetch every wheel once before anything is timed, so that tfmirror, pip and curl all
    meet the same (warm) state of any cache between here and PyPI. The resolve here
    reads upstream directly and caches nothing (tfmirror's runs with --no-cache)."""
    from mirror.core.config import Target
    from mirror.pypi.resolve import resolve_target

    target = Target(args.python, args.platform)
    wheels = resolve_target(tuple(args.requirements), target, args.upstream)
    # To /dev/null: deleting 600 MB of files on a disk mounted with `discard` slows the
    # writes that follow (measured: the next sync's download took 4.1 s instead of 2.5 s).
    curl_parallel([w.url for w in wheels], None)


def pip_download(args: argparse.Namespace, dest: Path) -> float:
    platforms = [f"--platform={p}" for p in platforms_for(args.platform)]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-cache-dir",
        "--only-binary=:all:",
        f"--python-version={args.python}",
        *platforms,
        f"--index-url={args.upstream}",
        "-d",
        str(dest),
        *args.requirements,
    ]
    began = time.monotonic()
    subprocess.run(cmd, check=True, env=clean_pip_env())
    # Its files stay until the round's folder goes, as tfmirror's store does: freed
    # memory and disk would speed up whichever runs next.
    return time.monotonic() - began


def install_check(args: argparse.Namespace, index_url: str, work: Path) -> str:
    """The done-when proof: a fresh venv, machine pip config off, devpi's index only."""
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    began = time.monotonic()
    pip = subprocess.run(
        [
            str(venv / "bin/python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--index-url",
            index_url,
            *args.requirements,
        ],
        env=clean_pip_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if pip.returncode != 0:
        return f"FAILED: {pip.stderr.strip().splitlines()[-1:]}"
    modules = [r.replace("-", "_") for r in args.requirements]
    probe = subprocess.run(
        [str(venv / "bin/python"), "-c", f"import {', '.join(modules)}"],
        capture_output=True,
        text=True,
        check=False,
    )
    verdict = "ok" if probe.returncode == 0 else f"import FAILED: {probe.stderr[-200:]}"
    return f"{verdict} ({time.monotonic() - began:.0f} s, then import {', '.join(modules)})"


@dataclass
class Round:
    cold: float
    pip: float
    split: dict[str, float]


def cold_round(
    args: argparse.Namespace, work: Path, first: bool, pip_first: bool
) -> tuple[Round, list[str]]:
    """One cold sync into an empty store and a fresh devpi, and `pip download`, in the
    order given (rounds alternate it), each after the disk has settled. The first round
    also does the no-op resync, the RSS and (--install) the install proof."""
    os.environ["UV_CACHE_DIR"] = str(work / "uv-cache")  # tfmirror's resolve starts cold
    if pip_first:
        settle()
    pip_wall = pip_download(args, work / "pip") if pip_first else 0.0
    config_path = write_config(work, args)
    config = load_config(str(config_path))
    if first:
        warm_up(args)
    lines = []
    t0 = time.monotonic()
    with DevpiProcess(config.devpi):
        devpi_start = time.monotonic() - t0
        settle()
        cold, cold_rss, cold_summary = timed_sync(config_path)
        store = LocalStore(config.storage.path)
        cold_run = json.loads(store.get(record_keys(store, "pypi")[0]) or b"{}")
        if first:
            noop, noop_rss, noop_summary = timed_sync(config_path)
            noop_run = json.loads(store.get(record_keys(store, "pypi")[-1]) or b"{}")
            files = [w for m in load_all(store) for w in m.files]
            total = sum(w.size or 0 for w in files)
            installed = install_check(args, config.devpi.index_url, work) if args.install else None
            lines += [
                f"target            py{args.python}-{args.platform}: {len(files)} wheels, "
                f"{total / 1e6:.0f} MB",
                f"devpi start       {devpi_start:6.2f} s  (before the clock; `up` keeps it up)",
                f"tfmirror cold     {cold:6.2f} s  {cold_summary}",
                f"tfmirror no-op    {noop:6.2f} s  {noop_summary}; wheel bytes downloaded "
                f"{noop_run.get('bytes', -1)}",
                f"no-op resync                {noop:.2f} s  (target <= 3 s, 0 bytes)",
                f"tfmirror peak RSS           cold {cold_rss / 1024:.0f} MB, no-op "
                f"{noop_rss / 1024:.0f} MB  (target <= 250 MB)",
            ]
            if installed is not None:
                lines.append(
                    f"pip install {' '.join(args.requirements)} from devpi alone: {installed}"
                )
            curl_wall = curl_parallel([w.url for w in files], work / "curl")
            lines.append(f"curl --parallel 8 {curl_wall:6.2f} s  (the same URLs, to files)")
    if not pip_first:
        settle()
        pip_wall = pip_download(args, work / "pip")
    return Round(cold, pip_wall, cold_run.get("timings", {})), lines


def main() -> None:
    host = host_target()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=host.python)
    parser.add_argument("--platform", default=host.platform)
    parser.add_argument("--upstream", default="https://pypi.org/simple/")
    parser.add_argument(
        "--rounds", type=int, default=3, help="cold sync + pip download pairs (median ratio)"
    )
    parser.add_argument(
        "--install", action="store_true", help="also pip install them from devpi in a fresh venv"
    )
    parser.add_argument("requirements", nargs="*", default=["tensorflow", "tensorflow-hub"])
    args = parser.parse_args()

    rounds, lines = [], []
    for number in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="tfmirror-bench-") as tmp:
            result, first_lines = cold_round(
                args, Path(tmp), first=number == 0, pip_first=number % 2 == 1
            )
        rounds.append(result)
        lines += first_lines
    lines.append(
        "round  tfmirror cold (devpi holds all)  fleet served  pip download  ratio"
        "  (even rounds: pip first)"
    )
    for number, r in enumerate(rounds, 1):
        s = r.split
        lines.append(
            f"{number:5}  {r.cold:6.2f} s  (resolve {s.get('resolve', 0):.2f}, download "
            f"{s.get('download_verify_store', 0):.2f}, devpi {s.get('devpi', 0):.2f})  "
            f"{s.get('committed_at', 0):6.2f} s  {r.pip:8.2f} s  {r.cold / r.pip:5.2f}x"
        )
    held = statistics.median(r.cold / r.pip for r in rounds)
    served = statistics.median(r.split.get("committed_at", 0) / r.pip for r in rounds)
    lines += [
        f"ratio until the fleet installs every file through the entry point (committed; "
        f"nginx sends the store's blobs devpi does not hold yet), median of {len(rounds)}: "
        f"{served:.2f}x  (target <= 1.0)",
        f"  until devpi also holds every file: {held:.2f}x",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
