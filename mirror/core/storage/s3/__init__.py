"""The S3 backend: the store (store: blobs by multipart upload, documents with ETags),
its leader lock (lock: a lease object written under conditions), and the conditional
PUT both stand on (conditional)."""

from __future__ import annotations

from mirror.core.storage.s3.lock import S3Lock
from mirror.core.storage.s3.store import S3Store

__all__ = ["S3Lock", "S3Store"]
