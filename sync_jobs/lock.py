"""The leader lock: N schedulers on N machines run each job at most once at a time.

S3: a lease object at locks/<job>, created with `If-None-Match: *` (only one creator
wins), renewed and released with `If-Match: <our ETag>` (never overwriting someone
else's), and taken over after it expires with `If-Match: <the expired ETag>` (only one
taker wins). Local disk: an exclusive flock, which the kernel drops when the holder
dies, however it dies.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mirror.storage import BlobStore, LocalStore, S3Store

LOCKS = "locks"


class Lease(Protocol):
    job: str

    def renew(self) -> bool:
        """Extend the lease; False if it was lost (expired and taken over)."""

    def release(self) -> None: ...


class LeaderLock(Protocol):
    def acquire(self, job: str) -> Lease | None:
        """The lease for `job`, or None while another holder has it."""


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# --------------------------------------------------------------------------- local disk


@dataclass
class _FileLease:
    job: str
    fd: int

    def renew(self) -> bool:
        return True  # a flock does not expire

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
        os.write(fd, holder_id().encode())
        return _FileLease(job, fd)


# --------------------------------------------------------------------------- S3


def _code(exc: Exception) -> str:
    response: dict[str, Any] = getattr(exc, "response", {})
    return str(response.get("Error", {}).get("Code", ""))


@dataclass
class _S3Lease:
    lock: S3Lock
    job: str
    etag: str

    def renew(self) -> bool:
        etag = self.lock.write(self.job, if_match=self.etag)
        if etag is None:
            return False
        self.etag = etag
        return True

    def release(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.lock.client.delete_object(
                Bucket=self.lock.bucket, Key=self.lock.key(self.job), IfMatch=self.etag
            )
        except ClientError as exc:
            if _code(exc) not in ("PreconditionFailed", "NoSuchKey", "404"):
                raise


class S3Lock:
    def __init__(self, store: S3Store, ttl: float) -> None:
        self.client = store.client
        self.bucket = store.bucket
        self.store = store
        self.ttl = ttl
        self.holder = holder_id()

    def key(self, job: str) -> str:
        return self.store.key(f"{LOCKS}/{job}")

    def write(self, job: str, if_none_match: bool = False, if_match: str = "") -> str | None:
        """Put our lease body under a condition; its ETag, or None if the condition failed."""
        from botocore.exceptions import ClientError

        body = json.dumps({"holder": self.holder, "expires": time.time() + self.ttl})
        key = self.key(job)
        try:
            if if_none_match:
                answer = self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=body.encode(), IfNoneMatch="*"
                )
            else:
                answer = self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=body.encode(), IfMatch=if_match
                )
        except ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return None
            raise
        return str(answer["ETag"])

    def acquire(self, job: str) -> Lease | None:
        from botocore.exceptions import ClientError

        etag = self.write(job, if_none_match=True)
        if etag is not None:
            return _S3Lease(self, job, etag)
        try:
            current = self.client.get_object(Bucket=self.bucket, Key=self.key(job))
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):  # released in between: try once more
                etag = self.write(job, if_none_match=True)
                return None if etag is None else _S3Lease(self, job, etag)
            raise
        lease = json.loads(current["Body"].read())
        if float(lease.get("expires", 0)) > time.time():
            return None
        # Expired: take it over, unless another taker got there first.
        etag = self.write(job, if_match=current["ETag"])
        return None if etag is None else _S3Lease(self, job, etag)


def lock_for(store: BlobStore, ttl: float) -> LeaderLock:
    if isinstance(store, S3Store):
        return S3Lock(store, ttl)
    if isinstance(store, LocalStore):
        return FileLock(store.root)
    raise TypeError(f"no leader lock for {type(store).__name__}")
