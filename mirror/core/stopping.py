"""A stop asked for by a signal (SIGTERM, Ctrl-C), waited for by the main thread.

The handler only sets a flag. threading.Event would not do: its set() takes a lock that
the main thread may hold at that very moment, inside Event.wait() (the handler runs on
the main thread), and the process then waits forever for itself: seen under load, as a
`tfmirror up` that ignored SIGTERM.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class StopRequest:
    POLL = 0.1  # seconds; a stop is noticed this soon

    def __init__(self) -> None:
        self.requested = False

    def set(self) -> None:
        """Safe in a signal handler: no lock, no allocation."""
        self.requested = True

    def wait(self) -> None:
        while not self.requested:
            time.sleep(self.POLL)

    def wait_for(self, done: Callable[[], bool]) -> bool:
        """Wait until `done()` or a stop; True if stopped."""
        while not self.requested and not done():
            time.sleep(self.POLL)
        return self.requested
