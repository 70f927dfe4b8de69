"""What a process makes and would leave behind if it stopped before finishing it:
scratch space in the temporary folder (a proof's venvs, a model's extraction, a bridge's
socket) and the store's half-written blobs. Each is remembered while it exists, so a
process that stops before the job ends (`up` after its grace, a command on Ctrl-C)
removes it on its way out, where a `finally` would never run."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Leftovers:
    """Paths held while they are being made; `drop()` removes every one still held."""

    def __init__(self) -> None:
        self._held: set[Path] = set()
        self._lock = threading.Lock()

    def remember(self, path: Path) -> None:
        with self._lock:
            self._held.add(path)

    def forget(self, path: Path) -> None:
        with self._lock:
            self._held.discard(path)

    def drop(self) -> int:
        """Remove every folder and file still held; how many there were."""
        with self._lock:
            paths = list(self._held)
            self._held.clear()
        for path in paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return len(paths)


SCRATCH = Leftovers()  # in the temporary folder
remember, forget, drop_scratch = SCRATCH.remember, SCRATCH.forget, SCRATCH.drop


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
