"""A blob as a seekable file, for readers that jump to offsets (a FlatBuffer, a zip's
central directory): the store's own file on local disk, else a spooled copy in a
temporary file (S3), so memory stays flat however big the model."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from mirror.core.storage import BlobStore

CHUNK = 1024 * 1024


@contextmanager
def seekable_blob(store: BlobStore, sha256: str) -> Iterator[tuple[BinaryIO, int]]:
    """The blob's bytes, seekable, and its size; BlobNotFound if it is not stored."""
    local = store.local_path(sha256)
    if local is not None:
        with open(local, "rb") as f:
            yield f, local.stat().st_size
        return
    with tempfile.TemporaryFile(prefix="tfmirror-blob-") as spool, store.open_blob(sha256) as src:
        shutil.copyfileobj(src, spool, CHUNK)
        size = spool.tell()
        spool.seek(0)
        yield spool, size
