"""A blob as a seekable file, for readers that jump to offsets (a FlatBuffer, a zip's
central directory): the store's own file on local disk, else a spooled copy in a
temporary file (S3), so memory stays flat however big the model."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping
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


def served_file(archive: Mapping[str, object], name: str) -> str | None:
    """The sha256 of the blob a model's folder file `name` is kept as (its manifest's
    `served_files`: a TF.js model.json, an archived .tflite), or None."""
    files = archive.get("served_files")
    ref = files.get(name) if isinstance(files, Mapping) else None
    sha256 = ref.get("sha256") if isinstance(ref, Mapping) else None
    return sha256 if isinstance(sha256, str) else None
