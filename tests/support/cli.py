"""Running the real `tfmirror` command line as a user does, for the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tfmirror(
    config_path: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`tfmirror --config CONFIG ARGS...` in a process of its own, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "tfmirror.cli", "--config", str(config_path), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )
