"""The leader lock's contract: a LeaderLock hands out one Lease per job at a time across
every process on a store, and says who holds it (a Holder, for the message a refused
caller prints). Each backend keeps its own lock beside its store (local.lock: an flock;
s3.lock: a conditionally written lease object); mirror.core.lease holds a lease for a
job run, renews it and fences commits with it."""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

LOCKS = "locks"


@dataclass(frozen=True)
class Holder:
    """Who holds a job's lease, for the message a refused caller prints."""

    who: str  # host:pid:nonce
    since: float  # epoch seconds

    def describe(self) -> str:
        when = datetime.fromtimestamp(self.since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"held by {self.who} since {when}"


class Lease(Protocol):
    job: str

    def renew(self) -> bool:
        """Extend the lease; False if it was lost (expired and taken over)."""

    def release(self) -> None: ...

    def left(self) -> float:
        """Seconds this holder may still count on the lease, on its own clock."""


class LeaderLock(Protocol):
    def acquire(self, job: str) -> Lease | None:
        """The lease for `job`, or None while another holder has it."""

    def holder(self, job: str) -> Holder | None:
        """Who holds `job` now, as far as can be read (None: nobody, or unknown)."""


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def died_here(holder: str) -> bool:
    """True if `holder` (host:pid:nonce) names a process of this machine that no longer
    runs. Hosts sharing one name would fool this; each replica needs its own hostname."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def read_holder(body: bytes) -> Holder | None:
    """The Holder a lease's body names (a lock file's, a lease object's); None if unreadable."""
    try:
        doc = json.loads(body)
        return Holder(str(doc["holder"]), float(doc["since"]))
    except (ValueError, KeyError, TypeError):
        return None
