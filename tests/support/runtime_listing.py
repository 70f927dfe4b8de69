"""A runtime kind's list_ops script run in this Python, as verify.runtimes runs it in an
environment's venv: `-I`, so the script cannot lean on tfmirror (a runtime venv has none
of it). Returns what its `RUNTIME {json}` line says."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from hub_cache.formats.base import RuntimeKind


def listing(kind: RuntimeKind, timeout: float) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-I", "-c", kind.list_ops, "{}"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RUNTIME "))
    return dict(json.loads(line.removeprefix("RUNTIME ")))
