"""Scratch space a job makes in the temporary folder (a proof's venvs, a model's
extraction, a bridge's socket), remembered while it exists: a process that stops before
the job ends (`up` after its grace, a command on Ctrl-C) removes it on its way out,
where a `finally` would never run."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_held: set[Path] = set()
_lock = threading.Lock()


def remember(path: Path) -> None:
    with _lock:
        _held.add(path)


def forget(path: Path) -> None:
    with _lock:
        _held.discard(path)


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder, removed when the body ends, or by drop_scratch() first."""
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as tmp:
        folder = Path(tmp)
        remember(folder)
        try:
            yield folder
        finally:
            forget(folder)


def drop_scratch() -> int:
    """Remove every scratch folder and file still held; how many there were."""
    with _lock:
        paths = list(_held)
        _held.clear()
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(paths)
