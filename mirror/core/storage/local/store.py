"""The local-disk store: blobs and documents as files under one root, a blob written
to a temporary file and renamed into place, a document replaced whole and durably, and
an flock per document for conditional writes (its leader lock is local.lock)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from mirror.core.config import StorageConfig
from mirror.core.errors import BlobNotFound, StoreError
from mirror.core.scratch import Leftovers
from mirror.core.storage.contract import BLOB_PREFIX, TMP_PREFIX, BlobWriter, blob_key
from mirror.core.storage.local.listings import FolderStamps
from mirror.core.storage.local.lock import FileLock
from mirror.core.storage.locks import LeaderLock


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
_writing = Leftovers()
drop_unfinished_writes = _writing.drop


class _LocalBlobWriter:
    def __init__(self, root: Path) -> None:
        self._root = root
        tmp_dir = root / TMP_PREFIX
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="blob-")
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; blobs are public content (nginx, devpi)
        self._path = Path(name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        _writing.remember(self._path)

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
        _writing.forget(self._path)

    def discard(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):  # a full disk fails the flush in close
                self._file.close()
            self._file = None
        self._path.unlink(missing_ok=True)
        _writing.forget(self._path)


class LocalStore:
    def __init__(self, root: Path) -> None:
        # Resolved once: keys are listed relative to it, and a relative root (or one
        # through a symlink) would not match the resolved paths of its own files.
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self._root_text = str(self.root)
        self._stamps = FolderStamps()

    @classmethod
    def from_config(cls, config: StorageConfig) -> LocalStore:
        return cls(config.path)

    def describe(self) -> str:
        return f"local:{self.root}"

    def _path(self, key: str) -> Path:
        return Path(self._file(key))

    def _file(self, key: str) -> str:
        # Lexical, as werkzeug's safe_join: a live index page reads several documents
        # per request, and resolve()'s lstat of every folder on the way cost more than
        # the page. The store writes no links, so there is none to follow out of it.
        rel = os.path.normpath(key) if key else "."
        if rel == ".." or rel.startswith(("../", "/")) or "\0" in rel:
            raise StoreError(f"{key}: key escapes the store")
        return self._root_text if rel == "." else f"{self._root_text}/{rel}"

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
            with open(self._file(key), "rb") as f:
                return f.read()
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
        return sorted(key for key, _ in self._files(prefix))

    def stamps(self, prefix: str) -> dict[str, str]:
        return dict(self._stamps.stamps(self._file(prefix), self._root_text))

    def _files(self, prefix: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """Each file under `prefix` (not the hidden ones: temporaries, locks), by key.
        os.scandir, not pathlib's rglob: a live index page lists its manifests on every
        request, and rglob cost more than the page."""
        base = self._path(prefix)
        under = base.relative_to(self.root).as_posix()
        folders = [(str(base), "" if under == "." else under)]
        while folders:
            folder, key_of_folder = folders.pop()
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                key = f"{key_of_folder}/{entry.name}" if key_of_folder else entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append((entry.path, key))
                    elif entry.is_file() and not entry.name.startswith("."):
                        yield key, entry
                except FileNotFoundError:
                    continue  # deleted since the listing


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
