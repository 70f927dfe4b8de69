"""Reading and writing through any store: a hashing writer, ranged and seekable
readers, chunked bodies, and the conditional update of a shared document."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from mirror.core.errors import BlobNotFound, StoreError
from mirror.core.storage.contract import BlobStore, BlobWriter


class HashingWriter:
    """A BlobWriter that hashes and counts what passes through, so the blob can be
    published under its own sha256; also a write-only file object (for tarfile)."""

    def __init__(self, writer: BlobWriter) -> None:
        self._writer = writer
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        self._writer.write(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def publish(self) -> str:
        """Publish under the hash of everything written; returns that hash."""
        sha = self.sha256
        self._writer.publish(sha)
        return sha

    def discard(self) -> None:
        self._writer.discard()


class RangedFile(io.RawIOBase):
    """A file read by ranges, as a seekable file: zipfile reads a wheel's table of
    contents and one member, not the whole 572 MB (from S3, or from upstream)."""

    def __init__(self, read_range: Callable[[int, int], bytes], size: int) -> None:
        self._read_range = read_range  # (start, length) -> exactly those bytes
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        length = min(len(buffer), self._size - self._pos)
        if length <= 0:
            return 0
        data = self._read_range(self._pos, length)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _store_range(store: BlobStore, sha256: str) -> Callable[[int, int], bytes]:
    def read(start: int, length: int) -> bytes:
        with store.open_range(sha256, start, length) as reader:
            data: bytes = reader.read(length)
            return data

    return read


RANGE_READ = 256 * 1024


def open_seekable(store: BlobStore, sha256: str) -> BinaryIO:
    """A blob as a seekable file: the file itself on disk, ranged reads elsewhere."""
    path = store.local_path(sha256)
    if path is not None:
        return path.open("rb")
    size = store.blob_size(sha256)
    if size is None:
        raise BlobNotFound(f"blob {sha256} is not in {store.describe()}")
    return io.BufferedReader(RangedFile(_store_range(store, sha256), size), RANGE_READ)


def update_document(
    store: BlobStore, key: str, change: Callable[[bytes | None], bytes | None], tries: int = 20
) -> bool:
    """Read, change and conditionally write a shared document, again on a conflict, so
    no writer's update is lost. `change` gets the current bytes (None: absent) and
    returns the new ones, or None to write nothing; returns whether it wrote."""
    for _ in range(tries):
        current = store.get_versioned(key)
        new = change(current[0] if current else None)
        if new is None:
            return False
        if store.put_if(key, new, current[1] if current else None):
            return True
    raise StoreError(f"{key}: {tries} writers in a row changed it first; try again")


def iter_chunks(reader: BinaryIO, size: int = 1024 * 1024) -> Iterator[bytes]:
    """A store reader as a stream of chunks (a response body), closed when done."""
    try:
        while chunk := reader.read(size):
            yield chunk
    finally:
        reader.close()
