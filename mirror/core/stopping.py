"""A stop asked for by a signal (SIGTERM, Ctrl-C), waited for by the main thread. The
handler only sets a flag: threading.Event's set() takes a lock the main thread may hold
at that very moment inside Event.wait() (the handler runs on the main thread), and the
process then waits forever for itself, as a `tfmirror up` under load that ignored
SIGTERM did."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable


def signal_name(signum: int | None) -> str:
    """SIGTERM, SIGINT...: how a run record and a last line name the stop."""
    if signum is None:
        return "a stop"
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Stopped(KeyboardInterrupt):
    """A stop signal, raised in the main thread of a command: a KeyboardInterrupt (so
    everything that cleans up after Ctrl-C does so after SIGTERM too) that names it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signal = signal_name(signum)


def stop_signal(exc: BaseException) -> str:
    """The signal behind a KeyboardInterrupt: Python's own is SIGINT's."""
    return exc.signal if isinstance(exc, Stopped) else "SIGINT"


class StopRequest:
    POLL = 0.1  # seconds; a stop is noticed this soon

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None

    def set(self, signum: int | None = None) -> None:
        """Safe in a signal handler: no lock, no allocation."""
        self.signum = signum
        self.requested = True

    @property
    def signal(self) -> str:
        return signal_name(self.signum)

    def wait(self) -> None:
        while not self.requested:
            time.sleep(self.POLL)

    def wait_for(self, done: Callable[[], bool]) -> bool:
        """Wait until `done()` or a stop; True if stopped."""
        while not self.requested and not done():
            time.sleep(self.POLL)
        return self.requested
