"""The blob store: content-addressed blobs plus small documents (manifests, run records).

One contract (mirror.core.storage.contract: the blob and the document protocols), two
backends chosen by config (local, s3), and what reads and writes through either
(streams). Everything is importable from here, as before the split."""

from __future__ import annotations

from mirror.core.config import StorageConfig
from mirror.core.storage.contract import (
    BLOB_PREFIX,
    TMP_PREFIX,
    BlobNotFound,
    BlobStore,
    BlobWriter,
    DocumentReader,
    StoreError,
    blob_key,
)
from mirror.core.storage.local import LocalStore, drop_unfinished_writes
from mirror.core.storage.s3 import S3Store
from mirror.core.storage.streams import (
    RANGE_READ,
    HashingWriter,
    RangedFile,
    iter_chunks,
    open_seekable,
    update_document,
)

__all__ = [
    "BLOB_PREFIX",
    "RANGE_READ",
    "TMP_PREFIX",
    "BlobNotFound",
    "BlobStore",
    "BlobWriter",
    "DocumentReader",
    "HashingWriter",
    "LocalStore",
    "RangedFile",
    "S3Store",
    "StoreError",
    "blob_key",
    "drop_unfinished_writes",
    "iter_chunks",
    "open_seekable",
    "open_store",
    "update_document",
]


def open_store(config: StorageConfig) -> BlobStore:
    if config.backend == "s3":
        return S3Store(config)
    return LocalStore(config.path)
