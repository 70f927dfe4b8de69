"""The store's contract: content-addressed blobs and small documents, two protocols
(Blobs, Documents) that every backend keeps both of, with a leader lock for the jobs
that write it (BlobStore; the lock's own contract is storage.locks). Blobs are written
to a temporary key and published under their sha256 only after the caller verified
them, so a reader never sees a partial or unverified blob. Documents are written
whole, or only over the version read (put_if): the read-modify-write of shared state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from mirror.core.storage.locks import LeaderLock

BLOB_PREFIX = "blobs/sha256"


TMP_PREFIX = "tmp"


def blob_key(sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return f"{BLOB_PREFIX}/{sha256[:2]}/{sha256}"


class BlobWriter(Protocol):
    """A blob being written; invisible to readers until publish()."""

    def write(self, chunk: bytes) -> None: ...

    def publish(self, sha256: str) -> None:
        """Make the bytes written so far readable as blob `sha256` (caller has verified)."""

    def discard(self) -> None:
        """Drop everything written; safe to call after publish (then a no-op)."""


class Blobs(Protocol):
    """Content-addressed blobs: written unseen, published under their verified sha256,
    read whole or by range; what gc, the fronts and the syncs use."""

    def new_blob(self) -> BlobWriter: ...

    def has_blob(self, sha256: str) -> bool: ...

    def blob_size(self, sha256: str) -> int | None: ...

    def open_blob(self, sha256: str) -> BinaryIO:
        """A streaming reader; raises BlobNotFound."""

    def open_range(self, sha256: str, start: int, length: int) -> BinaryIO:
        """A streaming reader of `length` bytes from `start` (HTTP Range requests)."""

    def local_path(self, sha256: str) -> Path | None:
        """A filesystem path for zero-copy serving, where the backend has one."""

    def touch_blob(self, sha256: str) -> bool:
        """Re-stamp a blob's time as now (gc's grace then spares it); False if absent."""

    def delete_blob(self, sha256: str) -> None: ...

    def blob_mtime(self, sha256: str) -> float | None:
        """When the blob was written (epoch seconds), for gc's grace period."""

    def move_blob(self, sha256: str, key: str) -> None:
        """Move a blob out of the content-addressed space (quarantine), server-side."""

    def iter_blobs(self) -> Iterator[str]: ...

    def iter_temporaries(self) -> Iterator[tuple[str, float]]:
        """Unpublished blob writes (id, start time): crashed writers leave these behind."""

    def drop_temporary(self, ident: str) -> None: ...

    def presigned_url(self, sha256: str, seconds: int = 3600) -> str | None:
        """A time-limited URL clients can GET the blob from directly, where there is one."""


class DocumentReader(Protocol):
    """What a reader of manifests needs: the store's documents, or a snapshot's (held
    as they were, mirror.core.snapshots), read the same way."""

    def get(self, key: str) -> bytes | None:
        """A small document, or None when absent."""

    def list(self, prefix: str) -> list[str]: ...


class Documents(DocumentReader, Protocol):
    """Small documents (manifests, run records, state): whole writes, and conditional
    ones over the version read (S3 If-Match; a sha256 under an flock on disk)."""

    def put(self, key: str, data: bytes) -> None:
        """Write a small document atomically (readers see old or new, never half)."""

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        """A small document and its version (an S3 ETag; on disk its sha256), or None."""

    def put_if(self, key: str, data: bytes, version: str | None) -> bool:
        """Write only if the document is still at `version` (None: only if absent);
        False if another writer got there first. The read-modify-write of shared state."""

    def delete(self, key: str) -> None: ...

    def stamps(self, prefix: str) -> dict[str, str]:
        """Every document under `prefix` with a stamp that changes when it is written
        over, or deleted and made again, with other bytes (S3: its ETag, from the
        listing; on disk: its file's inode, size and time), for the cost of one listing:
        a reader that keeps what it parsed of a document by its stamp, not its key,
        sees it replaced."""


class BlobStore(Blobs, Documents, Protocol):
    """A store keeps both contracts, and the leases of the jobs that write it."""

    def describe(self) -> str: ...

    def leader_lock(self, ttl: float) -> LeaderLock:
        """The lock that keeps each job to one runner across every process on this store."""
