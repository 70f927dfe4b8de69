"""Bench: what the build sandbox costs per build.

One empty sdist (an in-tree PEP 517 backend: no build requirement, so no index is
needed and the figure is the sandbox's own cost) built into a wheel with `uv build
--wheel` by the host's Python, alternately:
- sandboxed, as a sync builds: first the sdist's declared build requirements read in a
  sandbox of their own, then the build in bubblewrap with its namespaces, the tree's
  cgroup (memory and process caps), the system read-only, a fresh uv cache in its /tmp;
- plain, the peer: the same `uv build --wheel` in a folder of its own, a fresh uv cache.
Target: sandboxed <= 1.5x plain (median of the runs). Needs bubblewrap.

    python -m bench.sandbox [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mirror.core.sandbox import Mounts, SandboxLimits, available, run_sandboxed
from mirror.pypi.interpreters import host_interpreter
from mirror.pypi.resolve import uv_binary
from mirror.pypi.sdist_builder import DECLARED
from testkit.wheels import SdistSpec, build_sdist, in_tree_backend

SPEC = SdistSpec("empty", "1.0", in_tree_backend("empty", "1.0"))


def _argv(uv: str, python: str) -> list[str]:
    return [
        uv, "build", "--no-config", "--wheel", "--out-dir", "out", "--python", python,
        "--no-index", f"src/{SPEC.filename}",
    ]  # fmt: skip


def _folder(root: Path, name: str) -> Path:
    work = root / name
    (work / "src").mkdir(parents=True)
    (work / "out").mkdir()
    (work / "src" / SPEC.filename).write_bytes(build_sdist(SPEC))
    return work


def sandboxed(root: Path, n: int) -> float:
    work = _folder(root, f"sandboxed-{n}")
    python = host_interpreter()
    uv = str(Path(uv_binary()).resolve())
    mounts = Mounts(
        read_only=(*python.prefixes, Path(uv)),
        env={"UV_CACHE_DIR": "/tmp/uv-cache", "UV_PYTHON_DOWNLOADS": "never"},
    )
    caps = SandboxLimits(300, 4096, 512)
    began = time.perf_counter()
    declared = [python.path, "-I", "-c", DECLARED, f"src/{SPEC.filename}", "declared.json"]
    if not run_sandboxed(declared, work, caps, mounts).ok:
        sys.exit("reading the declared build requirements failed")
    outcome = run_sandboxed(_argv(uv, python.path), work, caps, mounts)
    took = time.perf_counter() - began
    if not outcome.ok or not list((work / "out").glob("*.whl")):
        sys.exit(f"the sandboxed build failed: {outcome.tail[-500:]}")
    return took


def plain(root: Path, n: int) -> float:
    work = _folder(root, f"plain-{n}")
    env = {**os.environ, "UV_CACHE_DIR": str(work / "uv-cache"), "UV_PYTHON_DOWNLOADS": "never"}
    began = time.perf_counter()
    done = subprocess.run(
        _argv(uv_binary(), host_interpreter().path), cwd=work, env=env, capture_output=True
    )
    took = time.perf_counter() - began
    if done.returncode != 0 or not list((work / "out").glob("*.whl")):
        sys.exit(f"the plain build failed: {done.stderr.decode()[-500:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    missing = available()
    if missing is not None:
        sys.exit(missing)
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        root = Path(tmp)
        sandboxed(root, -1), plain(root, -1)  # warm the page cache for both
        inside, peer = [], []
        for n in range(args.runs):
            inside.append(sandboxed(root, n))
            peer.append(plain(root, n))
    a, b = statistics.median(inside), statistics.median(peer)
    print(f"empty sdist -> wheel, {args.runs} runs each, alternating")
    for what, runs in (("sandboxed", inside), ("plain uv build (peer)", peer)):
        low, mid, high = (round(x * 1000) for x in (min(runs), statistics.median(runs), max(runs)))
        print(f"  {what}: median {mid} ms (min {low}, max {high})")
    print(f"  ratio {a / b:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
