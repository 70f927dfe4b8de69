"""The leader lock: each job runs at most once at a time, whoever starts it (a CLI
command, a scheduler on any machine, the admin endpoint).

S3: a lease object at locks/<job>, created with `If-None-Match: *` (only one creator
wins), renewed and released with `If-Match: <our ETag>` (never overwriting someone
else's), and taken over once it has gone unrenewed for a ttl with `If-Match: <that
ETag>` (only one taker wins). Unrenewed is seen on the taker's own monotonic clock (the
same ETag for a whole ttl), never by comparing the expiry the holder wrote with the
taker's wall clock: two replicas whose clocks disagree by more than a ttl would each
think the other's lease expired. Local disk: an exclusive flock, which the kernel drops
when the holder dies, however it dies.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mirror.core.errors import TfmirrorError
from mirror.core.redact import bounded
from mirror.core.s3 import conditional_put, error_code

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LOCKS = "locks"
log = logging.getLogger("tfmirror.lease")


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


def _holder(body: bytes) -> Holder | None:
    try:
        doc = json.loads(body)
        return Holder(str(doc["holder"]), float(doc["since"]))
    except (ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------- local disk


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
        return _holder(body)


# --------------------------------------------------------------------------- S3


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
        return _holder(body)

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


class JobBusy(TfmirrorError):
    """Another holder runs the job now."""

    hint = "; pass --wait to run after it"

    def __init__(self, job: str, holder: Holder | None) -> None:
        self.job = job
        self.holder = holder
        who = holder.describe() if holder else "held by another process"
        super().__init__(f"{job} is running elsewhere ({who})")


class LeaseLost(TfmirrorError):
    """The job's lease is no longer this process's to count on: nothing may commit."""


# The leases this process holds, by job, while their holders run: commits check them.
_held: dict[str, tuple[Lease, float]] = {}  # job -> (lease, ttl)
_held_lock = threading.Lock()
FENCE_MARGIN = 5.0  # seconds


def fence(job: str) -> None:
    """Call right before a commit made under `job`'s lease: raises LeaseLost once the
    lease was lost, or has gone so long unrenewed (a paused process, an unreachable
    store) that another replica may soon take it over. Without a lease held here (a
    library call, a test) there is nothing to fence."""
    with _held_lock:
        held = _held.get(job)
    if held is None:
        return
    lease, ttl = held
    left = lease.left()
    # Longer than one commit's writes take; a sixth of the ttl leaves room for one
    # renewal that failed (every third) before a live holder would be fenced.
    if left < min(FENCE_MARGIN, ttl / 6):
        raise LeaseLost(
            f"{job}: the lease is lost or about to be ({left:.0f} s left of it): not "
            "committing; another replica may hold it now, and its run commits instead"
        )


def still_held(job: str) -> bool:
    """`fence(job)` as a question, for a write of shared state that is no commit (a run
    record's index, the page's state): False once it is another replica's to make."""
    try:
        fence(job)
    except LeaseLost:
        return False
    return True


@contextmanager
def renewed(lease: Lease, ttl: float) -> Iterator[None]:
    """Renew the lease every third of its ttl while the body runs; release it after.
    Commits in the body check it with `fence(job)`."""
    stop = threading.Event()
    with _held_lock:
        _held[lease.job] = (lease, ttl)

    def renew() -> None:
        while not stop.wait(ttl / 3):
            try:
                kept = lease.renew()
            except Exception as exc:  # the store is unreachable: try again next time
                log.warning("%s: could not renew the lease: %s", lease.job, bounded(str(exc), 300))
                continue
            if not kept:
                log.error("%s: lost the leader lease while running", lease.job)
                return

    renewer = threading.Thread(target=renew, name=f"lease-{lease.job}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        with _held_lock:
            if _held.get(lease.job, (None, 0.0))[0] is lease:
                del _held[lease.job]
        stop.set()
        renewer.join()
        try:
            lease.release()
        except Exception as exc:
            # Never hide the job's own outcome behind this: the lease expires by itself.
            log.warning(
                "%s: could not release the lease (%s); it expires within %.0f s",
                lease.job,
                bounded(str(exc), 300),
                ttl,
            )


@contextmanager
def holding(
    lock: LeaderLock,
    job: str,
    ttl: float,
    wait: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Lease]:
    """Hold `job`'s lease around the body; JobBusy while another has it (or, with
    `wait`, wait for it)."""
    lease = lock.acquire(job)
    while lease is None and wait:
        sleep(1.0)
        lease = lock.acquire(job)
    if lease is None:
        raise JobBusy(job, lock.holder(job))
    with renewed(lease, ttl):
        yield lease
