"""What a long-running command shows on the terminal: its own plain lines first, the
log lines (timestamped, by logger) after them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class _Held(logging.Handler):
    """Keeps records below `level` for later; passes the rest (a retry, a failure) on
    at once: someone waiting minutes for a first sync must see those."""

    def __init__(self, targets: list[logging.Handler], level: int) -> None:
        super().__init__()
        self.targets = targets
        self.passing = level
        self.kept: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= self.passing:
            self.forward(record)
        else:
            self.kept.append(record)

    def forward(self, record: logging.LogRecord) -> None:
        for handler in self.targets:
            if record.levelno >= handler.level:
                handler.handle(record)


@contextmanager
def logs_after(level: int = logging.WARNING) -> Iterator[None]:
    """Hold the log's INFO lines until the block (a startup banner) is done, then let
    them out in order: the banner reads as one block, not interleaved with them."""
    root = logging.getLogger()
    held = _Held(list(root.handlers), level)
    root.handlers = [held]
    try:
        yield
    finally:
        root.handlers = held.targets
        for record in held.kept:
            held.forward(record)
