"""The blob store: content-addressed blobs plus small documents (manifests, run records).

One contract, two backends chosen by config. Blobs are written to a temporary key and
published under their sha256 only after the caller has verified them, so a reader never
sees a partial or unverified blob. boto3 errors stop here and become StoreError.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from mirror.core.config import StorageConfig
from mirror.core.errors import TfmirrorError
from mirror.core.lease import FileLock, LeaderLock, S3Lock
from mirror.core.s3 import conditional_put

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BLOB_PREFIX = "blobs/sha256"
TMP_PREFIX = "tmp"


class StoreError(TfmirrorError):
    """The store failed (I/O, S3); the message says which key and why."""

    label = "store"


class BlobNotFound(StoreError):
    pass


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


class BlobStore(Protocol):
    def new_blob(self) -> BlobWriter: ...

    def has_blob(self, sha256: str) -> bool: ...

    def blob_size(self, sha256: str) -> int | None: ...

    def open_blob(self, sha256: str) -> BinaryIO:
        """A streaming reader; raises BlobNotFound."""

    def open_range(self, sha256: str, start: int, length: int) -> BinaryIO:
        """A streaming reader of `length` bytes from `start` (HTTP Range requests)."""

    def local_path(self, sha256: str) -> Path | None:
        """A filesystem path for zero-copy serving, where the backend has one."""

    def delete_blob(self, sha256: str) -> None: ...

    def blob_mtime(self, sha256: str) -> float | None:
        """When the blob was written (epoch seconds), for gc's grace period."""

    def move_blob(self, sha256: str, key: str) -> None:
        """Move a blob out of the content-addressed space (quarantine), server-side."""

    def iter_blobs(self) -> Iterator[str]: ...

    def iter_temporaries(self) -> Iterator[tuple[str, float]]:
        """Unpublished blob writes (id, start time): crashed writers leave these behind."""

    def drop_temporary(self, ident: str) -> None: ...

    def get(self, key: str) -> bytes | None:
        """A small document, or None when absent."""

    def put(self, key: str, data: bytes) -> None:
        """Write a small document atomically (readers see old or new, never half)."""

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        """A small document and its version (an S3 ETag; on disk its sha256), or None."""

    def put_if(self, key: str, data: bytes, version: str | None) -> bool:
        """Write only if the document is still at `version` (None: only if absent);
        False if another writer got there first. The read-modify-write of shared state."""

    def touch_blob(self, sha256: str) -> bool:
        """Re-stamp a blob's time as now (gc's grace then spares it); False if absent."""

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str) -> list[str]: ...

    def describe(self) -> str: ...

    def leader_lock(self, ttl: float) -> LeaderLock:
        """The lock that keeps each job to one runner across every process on this store."""

    def presigned_url(self, sha256: str, seconds: int = 3600) -> str | None:
        """A time-limited URL clients can GET the blob from directly, where there is one."""


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


# --------------------------------------------------------------------------- local disk


def _replace_durably(tmp: Path, final: Path) -> None:
    """Rename `tmp` (already fsynced) over `final` and fsync the folder, so that the
    rename itself survives a crash: a manifest is the commit point of a sync."""
    os.replace(tmp, final)
    fd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _disk_errors(root: Path) -> Iterator[None]:
    """A full or failing disk as a StoreError that names the store: the job reports it
    as one line, and a half-written temporary file is discarded by the caller."""
    try:
        yield
    except OSError as exc:
        raise StoreError(f"store {root}: {exc.strerror or exc}") from None


# The temporary files of blobs this process is writing: a command interrupted by Ctrl-C
# removes them on its way out (one killed outright leaves them to gc's grace period).
_writing: set[Path] = set()
_writing_lock = threading.Lock()


def drop_unfinished_writes() -> int:
    """Remove the temporary files of every blob still being written; how many there were."""
    with _writing_lock:
        paths = list(_writing)
        _writing.clear()
    for path in paths:
        path.unlink(missing_ok=True)
    return len(paths)


def _written(path: Path) -> None:
    with _writing_lock:
        _writing.discard(path)


class _LocalBlobWriter:
    def __init__(self, root: Path) -> None:
        self._root = root
        tmp_dir = root / TMP_PREFIX
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="blob-")
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; blobs are public content (nginx, devpi)
        self._path = Path(name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        with _writing_lock:
            _writing.add(self._path)

    def write(self, chunk: bytes) -> None:
        assert self._file is not None, "write after publish/discard"
        with _disk_errors(self._root):
            self._file.write(chunk)

    def publish(self, sha256: str) -> None:
        assert self._file is not None, "publish twice"
        with _disk_errors(self._root):
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            final = self._root / blob_key(sha256)
            final.parent.mkdir(parents=True, exist_ok=True)
            _replace_durably(self._path, final)
        _written(self._path)

    def discard(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):  # a full disk fails the flush in close
                self._file.close()
            self._file = None
        self._path.unlink(missing_ok=True)
        _written(self._path)


class LocalStore:
    def __init__(self, root: Path) -> None:
        # Resolved once: keys are listed relative to it, and a relative root (or one
        # through a symlink) would not match the resolved paths of its own files.
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()

    def describe(self) -> str:
        return f"local:{self.root}"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise StoreError(f"{key}: key escapes the store")
        return path

    def new_blob(self) -> BlobWriter:
        return _LocalBlobWriter(self.root)

    def has_blob(self, sha256: str) -> bool:
        return self._path(blob_key(sha256)).is_file()

    def blob_size(self, sha256: str) -> int | None:
        try:
            return self._path(blob_key(sha256)).stat().st_size
        except FileNotFoundError:
            return None

    def open_blob(self, sha256: str) -> BinaryIO:
        try:
            return self._path(blob_key(sha256)).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(f"blob {sha256} is not in {self.describe()}") from None

    def open_range(self, sha256: str, start: int, length: int) -> BinaryIO:
        reader = self.open_blob(sha256)
        reader.seek(start)
        return _Window(reader, length)  # type: ignore[return-value]

    def local_path(self, sha256: str) -> Path | None:
        path = self._path(blob_key(sha256))
        return path if path.is_file() else None

    def presigned_url(self, sha256: str, seconds: int = 3600) -> str | None:
        return None

    def leader_lock(self, ttl: float) -> LeaderLock:
        # An flock does not expire: the kernel drops it when the holder dies.
        return FileLock(self.root)

    def delete_blob(self, sha256: str) -> None:
        self._path(blob_key(sha256)).unlink(missing_ok=True)

    def blob_mtime(self, sha256: str) -> float | None:
        try:
            return self._path(blob_key(sha256)).stat().st_mtime
        except FileNotFoundError:
            return None

    def move_blob(self, sha256: str, key: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(self._path(blob_key(sha256)), target)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {sha256} is not in {self.describe()}") from None

    def iter_blobs(self) -> Iterator[str]:
        base = self.root / BLOB_PREFIX
        if base.is_dir():
            for path in base.glob("*/*"):
                yield path.name

    def iter_temporaries(self) -> Iterator[tuple[str, float]]:
        base = self.root / TMP_PREFIX
        if base.is_dir():
            for path in base.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    yield path.name, path.stat().st_mtime

    def drop_temporary(self, ident: str) -> None:
        self._path(f"{TMP_PREFIX}/{ident}").unlink(missing_ok=True)

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        with _disk_errors(self.root):
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._key_lock(path):
                self._write(path, data)

    def _write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        try:
            with tmp.open("wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk: leave no partial document behind
            raise
        _replace_durably(tmp, path)

    @contextmanager
    def _key_lock(self, path: Path) -> Iterator[None]:
        """An flock per document, so a compare and its replace are one step for every
        process on this disk (the kernel drops it if the holder dies)."""
        fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        data = self.get(key)
        return None if data is None else (data, hashlib.sha256(data).hexdigest())

    def put_if(self, key: str, data: bytes, version: str | None) -> bool:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._key_lock(path):
            current = self.get_versioned(key)
            if (current[1] if current else None) != version:
                return False
            self._write(path, data)
            return True

    def touch_blob(self, sha256: str) -> bool:
        try:
            os.utime(self._path(blob_key(sha256)))
            return True
        except FileNotFoundError:
            return False

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )


class _Window:
    """At most `length` bytes of a reader."""

    def __init__(self, reader: BinaryIO, length: int) -> None:
        self._reader = reader
        self._left = length

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._reader.read(n) if n else b""
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> _Window:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


# --------------------------------------------------------------------------- S3

# Parts must be >= 5 MiB (except the last); 16 MiB keeps memory per download small.
PART_SIZE = 16 * 1024 * 1024


class _S3BlobWriter:
    """Streams into a multipart upload at a temporary key; publish copies server-side."""

    def __init__(self, store: S3Store) -> None:
        self._store = store
        self._tmp_key = store.key(f"{TMP_PREFIX}/blob-{uuid.uuid4().hex}")
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self._done = False

    def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        if len(self._buffer) >= PART_SIZE:
            self._flush_part()

    def _flush_part(self) -> None:
        client, bucket = self._store.client, self._store.bucket
        with self._store.errors(self._tmp_key):
            if self._upload_id is None:
                created = client.create_multipart_upload(Bucket=bucket, Key=self._tmp_key)
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            answer = client.upload_part(
                Bucket=bucket,
                Key=self._tmp_key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=bytes(self._buffer),
            )
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        self._buffer.clear()

    def publish(self, sha256: str) -> None:
        client, bucket = self._store.client, self._store.bucket
        with self._store.errors(self._tmp_key):
            if self._upload_id is None:
                # Small blob: one PUT, straight to its final key (a PUT is atomic).
                client.put_object(
                    Bucket=bucket, Key=self._store.key(blob_key(sha256)), Body=bytes(self._buffer)
                )
                self._buffer.clear()
                self._done = True
                return
            if self._buffer:
                self._flush_part()
            client.complete_multipart_upload(
                Bucket=bucket,
                Key=self._tmp_key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},  # type: ignore[typeddict-item]
            )
            self._done = True
            # Managed copy: server-side, multipart for objects over 5 GB.
            client.copy(
                {"Bucket": bucket, "Key": self._tmp_key},
                bucket,
                self._store.key(blob_key(sha256)),
            )
            client.delete_object(Bucket=bucket, Key=self._tmp_key)

    def discard(self) -> None:
        self._buffer.clear()
        if self._upload_id is not None and not self._done:
            with self._store.errors(self._tmp_key):
                self._store.client.abort_multipart_upload(
                    Bucket=self._store.bucket, Key=self._tmp_key, UploadId=self._upload_id
                )
        self._done = True


@contextmanager
def _s3_errors(key: str) -> Iterator[None]:
    """Turns botocore errors into StoreError (or BlobNotFound) at the storage boundary."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NotFound"):
            raise BlobNotFound(f"{key}: not found") from None
        raise StoreError(f"{key}: S3 error {code}: {exc}") from None
    except BotoCoreError as exc:
        raise StoreError(f"{key}: {exc}") from None


class S3Store:
    def __init__(self, config: StorageConfig, client: S3Client | None = None) -> None:
        self.bucket = config.bucket
        self.prefix = config.prefix
        self._endpoint = config.endpoint_url
        if client is None:
            import boto3
            from botocore.config import Config as BotoConfig

            # Retries configured once, here: adaptive backoff on throttling and 5xx.
            client = boto3.client(
                "s3",
                endpoint_url=config.endpoint_url or None,
                region_name=config.region or None,
                config=BotoConfig(
                    retries={"max_attempts": 5, "mode": "standard"},
                    max_pool_connections=32,
                ),
            )
        self.client = client

    def describe(self) -> str:
        where = f" at {self._endpoint}" if self._endpoint else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    def key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def errors(self, key: str) -> AbstractContextManager[None]:
        return _s3_errors(key)

    def new_blob(self) -> BlobWriter:
        return _S3BlobWriter(self)

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            with self.errors(key):
                head = self.client.head_object(Bucket=self.bucket, Key=self.key(key))
        except BlobNotFound:
            return None
        return dict(head)

    def has_blob(self, sha256: str) -> bool:
        return self._head(blob_key(sha256)) is not None

    def blob_size(self, sha256: str) -> int | None:
        head = self._head(blob_key(sha256))
        return None if head is None else int(head["ContentLength"])

    def open_blob(self, sha256: str) -> BinaryIO:
        key = blob_key(sha256)
        try:
            with self.errors(key):
                answer = self.client.get_object(Bucket=self.bucket, Key=self.key(key))
        except BlobNotFound:
            raise BlobNotFound(f"blob {sha256} is not in {self.describe()}") from None
        return answer["Body"]  # type: ignore[return-value]

    def open_range(self, sha256: str, start: int, length: int) -> BinaryIO:
        key = blob_key(sha256)
        with self.errors(key):
            answer = self.client.get_object(
                Bucket=self.bucket, Key=self.key(key), Range=f"bytes={start}-{start + length - 1}"
            )
        return answer["Body"]  # type: ignore[return-value]

    def local_path(self, sha256: str) -> Path | None:
        return None

    def leader_lock(self, ttl: float) -> LeaderLock:
        return S3Lock(self.client, self.bucket, self.key, ttl)

    def presigned_url(self, sha256: str, seconds: int = 3600) -> str | None:
        """A time-limited GET URL for a blob, for clients that can reach S3 directly."""
        key = blob_key(sha256)
        with self.errors(key):
            return str(
                self.client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self.bucket, "Key": self.key(key)},
                    ExpiresIn=seconds,
                )
            )

    def delete_blob(self, sha256: str) -> None:
        self.delete(blob_key(sha256))

    def blob_mtime(self, sha256: str) -> float | None:
        head = self._head(blob_key(sha256))
        return None if head is None else float(head["LastModified"].timestamp())

    def move_blob(self, sha256: str, key: str) -> None:
        source = blob_key(sha256)
        with self.errors(source):
            self.client.copy(
                {"Bucket": self.bucket, "Key": self.key(source)}, self.bucket, self.key(key)
            )
            self.client.delete_object(Bucket=self.bucket, Key=self.key(source))

    def iter_blobs(self) -> Iterator[str]:
        for key in self.list(BLOB_PREFIX):
            yield key.rsplit("/", 1)[-1]

    def iter_temporaries(self) -> Iterator[tuple[str, float]]:
        tmp = self.key(f"{TMP_PREFIX}/")
        with self.errors(tmp):
            uploads = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=tmp
            )
            for page in uploads:
                for upload in page.get("Uploads", []):
                    ident = f"upload:{upload['Key']}:{upload['UploadId']}"
                    yield ident, upload["Initiated"].timestamp()
            objects = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=tmp
            )
            for listing in objects:
                for obj in listing.get("Contents", []):
                    yield f"object:{obj['Key']}", obj["LastModified"].timestamp()

    def drop_temporary(self, ident: str) -> None:
        kind, _, rest = ident.partition(":")
        with self.errors(rest):
            if kind == "upload":
                key, _, upload_id = rest.rpartition(":")
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            else:
                self.client.delete_object(Bucket=self.bucket, Key=rest)

    def get(self, key: str) -> bytes | None:
        try:
            with self.errors(key):
                answer = self.client.get_object(Bucket=self.bucket, Key=self.key(key))
                data: bytes = answer["Body"].read()
        except BlobNotFound:
            return None
        return data

    def put(self, key: str, data: bytes) -> None:
        with self.errors(key):
            self.client.put_object(Bucket=self.bucket, Key=self.key(key), Body=data)

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            with self.errors(key):
                answer = self.client.get_object(Bucket=self.bucket, Key=self.key(key))
                return answer["Body"].read(), str(answer["ETag"])
        except BlobNotFound:
            return None

    def put_if(self, key: str, data: bytes, version: str | None) -> bool:
        try:
            with self.errors(key):
                return (
                    conditional_put(self.client, self.bucket, self.key(key), data, version)
                    is not None
                )
        except BlobNotFound:  # If-Match on a document deleted meanwhile
            return False

    def touch_blob(self, sha256: str) -> bool:
        key = self.key(blob_key(sha256))
        try:
            with self.errors(key):
                # A copy onto itself with new metadata is S3's way to re-stamp LastModified.
                self.client.copy_object(
                    Bucket=self.bucket,
                    Key=key,
                    CopySource={"Bucket": self.bucket, "Key": key},
                    MetadataDirective="REPLACE",
                )
        except BlobNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        with self.errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self.key(key))

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        strip = len(self.key("")) if self.prefix else 0
        with self.errors(prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.key(prefix.rstrip("/") + "/")
            )
            for page in pages:
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(keys)


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


def open_store(config: StorageConfig) -> BlobStore:
    if config.backend == "s3":
        return S3Store(config)
    return LocalStore(config.path)
