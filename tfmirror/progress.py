"""A one-line terminal progress bar for syncs: files and bytes."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from mirror.pypi.sync import Progress


class TerminalProgress(Progress):
    """Redraws at most 10 times a second; silent when stderr is not a terminal."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self.enabled = out.isatty()
        self.files = self.total_files = 0
        self.bytes = self.total_bytes = 0
        self._lock = threading.Lock()
        self._drawn = 0.0
        self._began = time.monotonic()

    def start(self, files: int, total_bytes: int) -> None:
        self.total_files, self.total_bytes = files, total_bytes
        self._began = time.monotonic()
        self._draw(force=True)

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.bytes += nbytes
        self._draw()

    def file_done(self) -> None:
        with self._lock:
            self.files += 1
        self._draw(force=True)

    def close(self) -> None:
        if self.enabled and self.total_files:
            self.out.write("\n")
            self.out.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or not self.total_files or (not force and now - self._drawn < 0.1):
            return
        self._drawn = now
        share = min(1.0, self.bytes / self.total_bytes) if self.total_bytes else 0.0
        bar = "#" * int(share * 30)
        rate = self.bytes / max(now - self._began, 1e-6) / 1e6
        self.out.write(
            f"\r[{bar:<30}] {self.files}/{self.total_files} files "
            f"{self.bytes / 1e6:.0f}/{self.total_bytes / 1e6:.0f} MB {rate:.0f} MB/s"
        )
        self.out.flush()
