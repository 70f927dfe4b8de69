"""The sandbox as the sdist builds use it: a scratch folder, uv and one Python mounted
read-only, the local index (mirror.pypi.local_index) as the only way out, and one line
that says which cap stopped a run. Both the resolve with sdists allowed
(mirror.pypi.closure_resolver) and the build itself (mirror.pypi.sdist_builder) run
their upstream code here, never in the syncer's process.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mirror.core.redact import bounded, redact_url
from mirror.core.sandbox import Bridge, Mounts, SandboxLimits, SandboxResult, run_sandboxed
from mirror.pypi.interpreters import Interpreter
from mirror.pypi.resolve import uv_binary

INDEX_PORT = 8000  # the local index, as the sandbox reaches it
# The local index as a sandbox reaches it: its session serves its environment's view
# whatever path it asks by, so no cooldown path is needed here.
SANDBOX_INDEX = f"http://127.0.0.1:{INDEX_PORT}/simple/"


@dataclass(frozen=True)
class BuildPolicy:
    build: bool  # [pypi] sdists = "build"; False: "refuse", a target without wheels fails
    caps: SandboxLimits


def tail(outcome: SandboxResult, lines: int = 6) -> str:
    """The end of what a sandboxed command said, on one line, bounded and redacted."""
    kept = [ln.strip() for ln in outcome.tail.splitlines() if ln.strip()][-lines:]
    return bounded(redact_url(" | ".join(kept)), 600) or "no output"


def why_stopped(outcome: SandboxResult, caps: SandboxLimits) -> str:
    """Which cap stopped it, in one line, or how it exited."""
    if outcome.timed_out:
        return f"stopped at the {caps.seconds:g} s time limit ([pypi] build_timeout)"
    if outcome.hit == "memory":
        return f"stopped at the {caps.memory_mb} MB memory cap ([pypi] build_memory_mb)"
    if outcome.hit == "process":
        return f"stopped at the {caps.processes}-process cap ([pypi] build_processes)"
    return f"exit {outcome.returncode}"


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A folder of the host's, removed after the block, whatever a sandbox left in it."""
    folder = Path(tempfile.mkdtemp(prefix="tfmirror-build-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_in_sandbox(
    argv: list[str],
    work: Path,
    python: Interpreter,
    index: Path | None,
    env: Mapping[str, str],
    caps: SandboxLimits,
) -> SandboxResult:
    """`argv` in the sandbox; `index`: the local index's socket, which it reaches at
    INDEX_PORT."""
    uv = Path(uv_binary()).resolve()
    mounts = Mounts(
        read_only=(*python.prefixes, uv),
        bridges=(Bridge(index, INDEX_PORT),) if index is not None else (),
        forwarder_python=python.path,
        env={
            "UV_CACHE_DIR": "/tmp/uv-cache",
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_NO_PROGRESS": "1",
            # The local index may read a wheel's METADATA by ranges from upstream
            # first: slower than uv's 30 s default allows on a big wheel.
            "UV_HTTP_TIMEOUT": "300",
            **env,
        },
    )
    argv = [str(uv) if a == uv_binary() else a for a in argv]
    return run_sandboxed(argv, work, caps, mounts)
