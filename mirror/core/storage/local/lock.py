"""The local-disk backend's leader lock: an exclusive flock on locks/<job>.lock under
the store's root, which the kernel drops when the holder dies, however it dies (so a
lease never expires and never needs renewing); the file names its holder for the
message a refused caller prints."""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from mirror.core.storage.locks import LOCKS, Holder, Lease, holder_id, read_holder


@dataclass
class _FileLease:
    job: str
    fd: int

    def renew(self) -> bool:
        return True  # a flock does not expire

    def left(self) -> float:
        return float("inf") if self.fd >= 0 else 0.0

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


class FileLock:
    def __init__(self, root: Path) -> None:
        self.dir = root / LOCKS
        self.dir.mkdir(parents=True, exist_ok=True)

    def acquire(self, job: str) -> Lease | None:
        fd = os.open(self.dir / f"{job}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"holder": holder_id(), "since": time.time()}).encode())
        return _FileLease(job, fd)

    def holder(self, job: str) -> Holder | None:
        try:
            body = (self.dir / f"{job}.lock").read_bytes()
        except FileNotFoundError:
            return None
        return read_holder(body)
