"""Bench: real production stacks, cold from live PyPI, against two peers in the same run.

Stacks (pick with --stacks; each is one environment with one target):
  tfx    tfx==1.16.0 on Python 3.10 (264 packages; three only as sdists: built in the
         sandbox, which needs bubblewrap and a Python 3.10)
  cuda   tensorflow[and-cuda] on 3.11 (45 wheels, ~3.4 GB: twelve nvidia-*-cu12)
  wide   fifteen everyday TensorFlow and data-science projects on this host's target

For each, in one fresh work folder:
  1. tfmirror's cold sync into an empty store and a fresh devpi (running, as beside
     `tfmirror up`), from the `tfmirror sync pypi` command's start to its end (devpi holds
     every file by then);
  2. peer A, what a user would do instead: `pip download` of the requirements (by the
     target's own Python, so markers and sdists are evaluated for it);
  3. peer B, the bytes alone: `pip download --no-deps` of the exact files the mirror
     fetched (wheels by their pins; sdists and build requirements by URL), and for
     reference `curl --parallel 8` of the same URLs;
  4. the no-op resync;
  5. with --install: `pip install` of the stack into a fresh venv of the target's Python
     inside `unshare -n` (root), through the environment's index alone.
Rounds alternate who goes first; each timed step starts from an emptied page cache.

    python -m bench.stacks [--stacks tfx,cuda,wide] [--install] [--peer-limit 900]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.common import settle, write_mirror_config
from mirror.core.config import Target, host_target, load_config
from mirror.core.storage import LocalStore
from mirror.core.web_server import WebServer
from mirror.devpi.server import DevpiProcess
from mirror.pypi.interpreters import find_interpreter
from mirror.pypi.manifest import load_all
from mirror.pypi.resolve import Role, platforms_for
from testkit.servers import clean_pip_env
from tfmirror.app import create_app
from verify import netns

WIDE = (
    "tensorflow",
    "tensorflow-hub",
    "tf-keras",
    "tensorflow-text",
    "tensorflowjs",
    "tensorflow-model-optimization",
    "tensorflow-probability",
    "tensorflow-decision-forests",
    "tensorflow-recommenders",
    "tensorflow-serving-api",
    "keras-hub",
    "kagglehub",
    "jupyterlab",
    "pandas",
    "scikit-learn",
)


@dataclass(frozen=True)
class Stack:
    name: str
    requirements: tuple[str, ...]
    python: str
    platform: str


def stacks() -> dict[str, Stack]:
    host = host_target()
    return {
        "tfx": Stack("tfx", ("tfx==1.16.0",), "3.10", "manylinux_2_17_x86_64"),
        "cuda": Stack("cuda", ("tensorflow[and-cuda]",), "3.11", "manylinux_2_28_x86_64"),
        "wide": Stack("wide", WIDE, host.python, host.platform),
    }


def write_config(work: Path, stack: Stack) -> Path:
    return write_mirror_config(
        work,
        [],
        f"""build_backends = []
[pypi.environments.{stack.name}]
requirements = {json.dumps(list(stack.requirements))}
targets = [{{python = "{stack.python}", platform = "{stack.platform}"}}]
[proxy]
enabled = false
""",
    )


PEER_LIMIT = 900.0  # seconds: pip's resolver can backtrack on TFX for an hour (--peer-limit)


def timed(
    command: list[str], timeout: float | None = None, **kw: object
) -> tuple[float, subprocess.CompletedProcess[str]]:
    began = time.monotonic()
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=timeout, **kw
        )  # type: ignore[call-overload]
    except subprocess.TimeoutExpired:
        proc = subprocess.CompletedProcess(command, -9, "", f"gave up after {timeout:.0f} s")
    return time.monotonic() - began, proc


def python_for(stack: Stack) -> str:
    found = find_interpreter(Target(stack.python, stack.platform))
    if found is None:
        sys.exit(f"{stack.name}: needs a Python {stack.python} (pyenv install {stack.python})")
    return found.path


def pip_download(
    python: str, args: list[str], dest: Path, limit: float = PEER_LIMIT
) -> tuple[float, str]:
    wall, proc = timed(
        [python, "-m", "pip", "download", "--quiet", "--no-cache-dir", "-d", str(dest), *args],
        timeout=limit,
        env=clean_pip_env(),
    )
    return wall, "ok" if proc.returncode == 0 else f"FAILED: {proc.stderr.strip()[-300:]}"


def curl_parallel(urls: list[str], dest: Path) -> float:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = ["curl", "--silent", "--fail", "--parallel", "--parallel-max", "8"]
    for i, url in enumerate(urls):
        cmd += ["-o", str(dest / f"{i}"), url]
    wall, _ = timed(cmd)
    shutil.rmtree(dest)
    return wall


def install_airgapped(stack: Stack, config_path: Path, work: Path) -> str:
    if not netns.can_unshare():
        return "skipped (needs root for unshare -n)"
    config = load_config(str(config_path))
    python = python_for(stack)
    venv = work / "node"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    index = f"{config.web.base_url}/{config.devpi.user}/{stack.name}/+simple/"
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--index-url", index]
    with ExitStack() as stack_ctx:
        stack_ctx.enter_context(DevpiProcess(config.devpi))
        stack_ctx.enter_context(WebServer(create_app(config), config.web.host, config.web.port))
        bridges = []
        for host, port in (("127.0.0.1", config.web.port), config.devpi.host_port):
            sock = Path(tempfile.gettempdir()) / f"tfmirror-bench-{uuid.uuid4().hex[:8]}.sock"
            bridge = netns.HostBridge(sock, host, port)
            stack_ctx.callback(bridge.close)
            bridges.append((sock, host, port))
        wall, proc = timed(netns.wrap([*pip, *stack.requirements], bridges), env=clean_pip_env())
    if proc.returncode != 0:
        return f"FAILED ({wall:.0f} s): {proc.stderr.strip()[-300:]}"
    return f"ok in {wall:.0f} s"


def run_stack(stack: Stack, work: Path, install: bool, peer_limit: float) -> list[str]:
    config_path = write_config(work, stack)
    config = load_config(str(config_path))
    python = python_for(stack)
    sync = [sys.executable, "-m", "tfmirror.cli", "--config", str(config_path), "sync", "pypi"]
    lines = [
        f"== {stack.name}: {' '.join(stack.requirements)} on py{stack.python}-{stack.platform}"
    ]
    # tfmirror first, then the user's way; each starts from an emptied page cache.
    with DevpiProcess(config.devpi):
        settle()
        cold, proc = timed(sync)
        if proc.returncode != 0:
            return [*lines, f"tfmirror sync FAILED: {proc.stderr.strip()[-800:]}"]
        summary = proc.stdout.strip().splitlines()[-1]
        store = LocalStore(config.storage.path)
        # The cold run's record (counts, time split), before the no-op writes its own.
        record = json.loads(store.get("runs/pypi/latest.json") or b"{}")
        noop, again = timed(sync)
    files = {w.sha256: w for m in load_all(store) for w in m.files}
    upstream_files = [w for w in files.values() if w.url]
    total = sum(w.size or 0 for w in upstream_files)
    pins = sorted(
        {
            f"{w.project}=={w.version}"
            for w in upstream_files
            if w.is_wheel and w.role is Role.CLOSURE
        }
    )
    others = [w.url for w in upstream_files if not (w.is_wheel and w.role is Role.CLOSURE)]
    settle()
    peer_a, verdict_a = pip_download(python, list(stack.requirements), work / "pip-a", peer_limit)
    shutil.rmtree(work / "pip-a", ignore_errors=True)
    settle()
    # Every platform tag the target's pip accepts, as the mirror picks from: pip takes an
    # explicit --platform literally (manylinux_2_36 alone misses a manylinux_2_28 wheel).
    platforms = [f"--platform={p}" for p in platforms_for(stack.platform)]
    platform_args = [f"--python-version={stack.python}", *platforms]
    peer_b, verdict_b = pip_download(
        sys.executable,
        ["--no-deps", "--only-binary=:all:", *platform_args, *pins],
        work / "pip-b",
    )
    curl_other = curl_parallel(others, work / "curl-b") if others else 0.0
    shutil.rmtree(work / "pip-b", ignore_errors=True)
    settle()
    curl_all = curl_parallel([w.url for w in upstream_files], work / "curl-all")
    bytes_alone = peer_b + curl_other
    timings = {k: round(v, 2) for k, v in record.get("timings", {}).items()}
    # The fleet installs through nginx from the commit on (the store's blobs for what
    # devpi does not hold yet): the run's time after it is devpi's pull.
    served = cold - (float(record.get("seconds", 0)) - timings.get("committed_at", 0))
    lines += [
        f"  files            {len(files)} ({len(upstream_files)} from upstream, "
        f"{total / 1e6:.0f} MB; {record.get('counts', {}).get('built', 0)} built from sdists)",
        f"  tfmirror cold    {cold:7.1f} s  {summary}",
        f"  tfmirror no-op   {noop:7.1f} s  {again.stdout.strip().splitlines()[-1]}  (<= 3 s)",
        f"  pip download     {peer_a:7.1f} s  {verdict_a}  -> ratio {cold / peer_a:.2f}x",
        f"  bytes alone      {bytes_alone:7.1f} s  (pip download --no-deps of {len(pins)} pins "
        f"{verdict_b}, + curl of {len(others)} sdists and build files {curl_other:.1f} s)"
        f"  -> ratio {cold / bytes_alone:.2f}x  (target <= 1.2)",
        f"  curl --parallel 8 of every file {curl_all:.1f} s  -> ratio {cold / curl_all:.2f}x",
        f"  fleet served     {served:7.1f} s  (committed: nginx sends every file from then on)"
        f"  -> ratio {served / bytes_alone:.2f}x of the bytes alone  (target <= 1.2)",
        f"  timings          {json.dumps(timings)}",
    ]
    if install:
        installed = install_airgapped(stack, config_path, work)
        lines.append(f"  pip install, air-gapped, through its index: {installed}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", default="tfx,cuda,wide")
    parser.add_argument("--install", action="store_true")
    parser.add_argument(
        "--peer-limit", type=float, default=PEER_LIMIT, help="seconds for `pip download`"
    )
    args = parser.parse_args()
    known = stacks()
    lines: list[str] = []
    for name in args.stacks.split(","):
        if name not in known:
            sys.exit(f"unknown stack {name!r}; use {', '.join(known)}")
        with tempfile.TemporaryDirectory(prefix=f"tfmirror-stack-{name}-") as tmp:
            os.environ["UV_CACHE_DIR"] = str(Path(tmp) / "uv-cache")
            stack_lines = run_stack(known[name], Path(tmp), args.install, args.peer_limit)
        print("\n".join(stack_lines), flush=True)
        lines += stack_lines


if __name__ == "__main__":
    main()
