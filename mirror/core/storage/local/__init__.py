"""The local-disk backend: the store (store: blobs and documents as files under one
root) and its leader lock (lock: an flock per job)."""

from __future__ import annotations

from mirror.core.storage.local.lock import FileLock
from mirror.core.storage.local.store import LocalStore, drop_unfinished_writes

__all__ = ["FileLock", "LocalStore", "drop_unfinished_writes"]
