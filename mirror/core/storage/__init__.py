"""The blob store: content-addressed blobs plus small documents (manifests, run
records), and a leader lock per job. One contract (contract: the blob and document
protocols; locks: the lock's), one package per backend (local, s3: its store and its
lock), chosen by `[storage].backend` from BACKENDS, and what reads and writes through
any of them (streams). A new backend is a package keeping the contract, a row in
BACKENDS and its name in mirror.core.backend_names. Everything is importable from here
but its errors, StoreError and BlobNotFound (mirror.core.errors)."""

from __future__ import annotations

from collections.abc import Callable

from mirror.core.backend_names import LOCAL, S3
from mirror.core.config import StorageConfig
from mirror.core.storage.contract import (
    BLOB_PREFIX,
    TMP_PREFIX,
    BlobStore,
    BlobWriter,
    DocumentReader,
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
    "BACKENDS",
    "BLOB_PREFIX",
    "RANGE_READ",
    "TMP_PREFIX",
    "BlobStore",
    "BlobWriter",
    "DocumentReader",
    "HashingWriter",
    "LocalStore",
    "RangedFile",
    "S3Store",
    "blob_key",
    "drop_unfinished_writes",
    "iter_chunks",
    "open_seekable",
    "open_store",
    "update_document",
]

# Each backend opens its store from the [storage] section, keyed by its `backend`
# (mirror.core.backend_names: the names the config accepts).
BACKENDS: dict[str, Callable[[StorageConfig], BlobStore]] = {
    LOCAL: LocalStore.from_config,
    S3: S3Store,
}


def open_store(config: StorageConfig) -> BlobStore:
    return BACKENDS[config.backend](config)
