"""The S3 backend's leader lock: a lease object at locks/<job>, created with
`If-None-Match: *` (only one creator wins), renewed and released with `If-Match: <our
ETag>` (never overwriting someone else's), and taken over once it has gone unrenewed for
a ttl with `If-Match: <that ETag>` (only one taker wins). Unrenewed is seen on the
taker's own monotonic clock (the same ETag for a whole ttl), never by comparing the
expiry the holder wrote with the taker's wall clock: two replicas whose clocks disagree
by more than a ttl would each think the other's lease expired."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mirror.core.storage.locks import LOCKS, Holder, Lease, died_here, holder_id, read_holder
from mirror.core.storage.s3.conditional import conditional_put, error_code

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass
class _S3Lease:
    lock: S3Lock
    job: str
    etag: str
    since: float
    # Monotonic time the last successful write of the lease was sent: a taker must see
    # what it wrote unchanged for a whole ttl, so until then + ttl it is ours.
    sent: float = field(default_factory=time.monotonic)
    lost: bool = False

    def renew(self) -> bool:
        sent = time.monotonic()
        etag = self.lock.write(self.job, self.since, if_match=self.etag)
        if etag is None:
            self.lost = True
            return False
        self.etag, self.sent = etag, sent
        return True

    def left(self) -> float:
        return 0.0 if self.lost else self.sent + self.lock.ttl - time.monotonic()

    def release(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.lock.client.delete_object(
                Bucket=self.lock.bucket, Key=self.lock.key(self.job), IfMatch=self.etag
            )
        except ClientError as exc:
            if error_code(exc) not in ("PreconditionFailed", "NoSuchKey", "404"):
                raise


# What each lease object looked like when this process first saw it so: (bucket, key) ->
# (ETag, monotonic time). Process-wide, as S3Lock objects come and go with each job run.
_seen: dict[tuple[str, str], tuple[str, float]] = {}
_seen_lock = threading.Lock()


def _unrenewed_for(bucket: str, key: str, etag: str) -> float:
    """Seconds this process has seen the lease at `key` with this ETag (0 the first time)."""
    now = time.monotonic()
    with _seen_lock:
        first = _seen.get((bucket, key))
        if first is None or first[0] != etag:
            _seen[(bucket, key)] = (etag, now)
            return 0.0
        return now - first[1]


class S3Lock:
    def __init__(
        self, client: S3Client, bucket: str, key: Callable[[str], str], ttl: float
    ) -> None:
        self.client = client
        self.bucket = bucket
        self._key = key
        self.ttl = ttl
        self.holder_id = holder_id()
        self.clock: Callable[[], float] = time.time  # a wall clock, only ever shown

    def key(self, job: str) -> str:
        return self._key(f"{LOCKS}/{job}")

    def holder(self, job: str) -> Holder | None:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(job))["Body"].read()
        except ClientError:
            return None
        return read_holder(body)

    def write(
        self, job: str, since: float, if_none_match: bool = False, if_match: str = ""
    ) -> str | None:
        """Put our lease body under a condition; its ETag, or None if the condition failed."""
        # `expires` is for people reading the object; takers go by `ttl` (see acquire).
        expires = self.clock() + self.ttl
        body = json.dumps(
            {"holder": self.holder_id, "since": since, "expires": expires, "ttl": self.ttl}
        )
        condition = None if if_none_match else if_match
        from botocore.exceptions import ClientError

        try:
            return conditional_put(
                self.client, self.bucket, self.key(job), body.encode(), condition
            )
        except ClientError as exc:
            # Nothing at that ETag any more (the replica that took the lease over has
            # released it): the condition failed like any other, it is no outage.
            if condition is not None and error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise

    def acquire(self, job: str) -> Lease | None:
        from botocore.exceptions import ClientError

        since = self.clock()
        sent = time.monotonic()
        etag = self.write(job, since, if_none_match=True)
        if etag is not None:
            return _S3Lease(self, job, etag, since, sent)
        try:
            current = self.client.get_object(Bucket=self.bucket, Key=self.key(job))
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):  # released in between: try once more
                sent = time.monotonic()
                etag = self.write(job, since, if_none_match=True)
                return None if etag is None else _S3Lease(self, job, etag, since, sent)
            raise
        lease = json.loads(current["Body"].read())
        try:
            ttl = max(self.ttl, float(lease.get("ttl", self.ttl)))
        except (TypeError, ValueError):
            ttl = self.ttl
        unrenewed = _unrenewed_for(self.bucket, self.key(job), str(current["ETag"]))
        if unrenewed < ttl and not died_here(str(lease.get("holder", ""))):
            return None
        # Unrenewed for a whole ttl, or its holder was a process on this machine that is
        # gone (killed, or its store vanished before it could release): take it over,
        # unless another taker got there first.
        sent = time.monotonic()
        etag = self.write(job, since, if_match=current["ETag"])
        return None if etag is None else _S3Lease(self, job, etag, since, sent)
