"""Model archive validation (and safe extraction), in one streaming pass. tensorflow_hub
reads `<handle>?tf-hub-format=compressed` with `tarfile.open("r|*")`: it refuses `..`,
links and files whose directory entry has not come yet, and it caches whatever prefix of
a model it was given (a response cut at a tar member boundary looks complete to it). So
the mirror checks everything before a model is published or prefetched: member paths and
types, entry order, a model of a known format at the root (hub_cache.formats), sizes
against caps (archive bombs), an intact compressed stream, and the tar end-of-archive
marker that a cut archive lacks. The work is linear in the bytes present: each member's
declared size counts against the caps before any of its bytes is read (a 6 KB archive
may declare a terabyte), header metadata (PAX records, GNU long names) is bounded before
tarfile reads it, and sparse members are refused outright (their holes would unpack past
every cap, and no model needs them)."""

from __future__ import annotations

import bz2
import lzma
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from hub_cache.errors import ArchiveRejected
from hub_cache.formats import looked_for, recognise
from hub_cache.formats.base import ModelFormat
from hub_cache.limits import NAME_MAX, PATH_MAX, RATIO_FLOOR, ArchiveLimits
from mirror.core.redact import bounded

CHUNK = 1024 * 1024
BLOCK = 512
# tarfile reads a PAX header or a GNU long name into memory whole; real ones are a few
# hundred bytes.
MAX_HEADER_DATA = 1024 * 1024
SHOWN = 200  # characters of a member name quoted in a reason


@dataclass(frozen=True)
class ArchiveFacts:
    compression: str
    files: int
    directories: int
    uncompressed_size: int  # sum of member file sizes
    root_file: str  # the root file that marks its format
    model_format: ModelFormat  # hub_cache.formats; the manifest keeps root_file, which says it
    # The bytes of the root member the caller asked to keep (`capture`), read in the same
    # pass; None where there was none, or it was larger than asked for.
    captured: bytes | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "format": self.model_format.key,
            "compression": self.compression,
            "files": self.files,
            "directories": self.directories,
            "uncompressed_size": self.uncompressed_size,
            "root_file": self.root_file,
        }


def _shown(name: str) -> str:
    return repr(bounded(name, SHOWN))


class _BoundedInfo(tarfile.TarInfo):
    """tarfile's member record, refusing what would make it read without bound."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _HEADER_TYPES and self.size > MAX_HEADER_DATA:
            raise ArchiveRejected(
                f"a tar header record declares {self.size} bytes of metadata "
                f"(more than {MAX_HEADER_DATA // 1024} KiB)"
            )
        return super()._proc_member(archive)  # type: ignore[misc,no-any-return]

    def _proc_sparse(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        raise ArchiveRejected(f"sparse member: {_shown(self.name)}")

    def _proc_gnusparse_00(self, *args: object) -> None:
        raise ArchiveRejected(f"sparse member (PAX 0.0): {_shown(self.name)}")

    def _proc_gnusparse_01(self, *args: object) -> None:
        raise ArchiveRejected(f"sparse member (PAX 0.1): {_shown(self.name)}")

    def _proc_gnusparse_10(self, *args: object) -> None:
        raise ArchiveRejected(f"sparse member (PAX 1.0): {_shown(self.name)}")


_HEADER_TYPES = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)


class _Prefixed:
    """A reader that first returns bytes already peeked from another reader."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0 or n >= len(self._head):
                out, self._head = self._head, b""
                return out + (self._rest.read(n - len(out)) if n >= 0 else self._rest.read())
            out, self._head = self._head[:n], self._head[n:]
            return out
        return self._rest.read(n)


class _Budget:
    """The caps for one archive, applied alike to what its members declare (before
    their bytes are read) and to what actually unpacks."""

    def __init__(self, compressed_size: int, caps: ArchiveLimits) -> None:
        self.max_bytes = caps.max_uncompressed
        self.max_ratio = caps.max_ratio
        self.ratio_bytes = max(caps.max_ratio * max(compressed_size, 1), RATIO_FLOOR)

    def check(self, total: int, what: str, why: str = "") -> None:
        if total > self.max_bytes:
            raise ArchiveRejected(
                f"archive bomb: {what} more than {self.max_bytes // 2**20} MiB "
                f"({why}[hub] max_uncompressed_mb)"
            )
        if total > self.ratio_bytes:
            raise ArchiveRejected(
                f"archive bomb: {what} more than {self.max_ratio:g}x the compressed size "
                f"({why}[hub] max_ratio)"
            )


class _Metered:
    """Counts decompressed bytes, enforces the caps, and remembers where the last
    non-zero byte was, to tell a real end-of-archive marker from a cut."""

    def __init__(self, raw: BinaryIO, limits: _Budget) -> None:
        self._raw = raw
        self._limits = limits
        self.total = 0
        self.last_nonzero_end = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            stripped = len(data.rstrip(b"\0"))
            if stripped:
                self.last_nonzero_end = self.total + stripped
            self.total += len(data)
            self._limits.check(self.total, "unpacks to")
        return data


class _FirstStream:
    """The first compressed stream of `raw`, decompressed, and nothing after it.

    tensorflow_hub reads an archive with tarfile's "r|*", which decompresses one gzip
    member (one bzip2 or xz stream) and stops: what follows is never read. gzip.GzipFile,
    BZ2File and LZMAFile read on into the next one. Validated with those, an archive of
    two members passes whole while a node caches the first alone, a model without its
    variables. So the mirror reads as the client does, and refuses anything but zeros
    after the first stream's end.
    """

    def __init__(self, raw: BinaryIO, kind: str) -> None:
        self._raw = raw
        self._kind = kind
        self._zlib = zlib.decompressobj(31) if kind == "gzip" else None  # 31: gzip framing
        self._other: bz2.BZ2Decompressor | lzma.LZMADecompressor | None = None
        if kind == "bzip2":
            self._other = bz2.BZ2Decompressor()
        elif kind == "xz":
            self._other = lzma.LZMADecompressor()
        self._tail = b""  # input zlib has not taken yet
        self._ended = False

    def read(self, n: int = -1) -> bytes:
        size = n if n > 0 else CHUNK
        while not self._ended:
            if self._zlib is not None:
                data = self._tail or self._raw.read(CHUNK)
                if not data:
                    raise EOFError(f"the {self._kind} stream ends before its end marker")
                out = self._zlib.decompress(data, size)
                self._tail = self._zlib.unconsumed_tail
                self._ended, after = self._zlib.eof, self._zlib.unused_data
            else:
                assert self._other is not None
                data = self._raw.read(CHUNK) if self._other.needs_input else b""
                if self._other.needs_input and not data:
                    raise EOFError(f"the {self._kind} stream ends before its end marker")
                out = self._other.decompress(data, size)
                self._ended, after = self._other.eof, self._other.unused_data
            if self._ended:
                self._refuse_what_follows(after)
            if out:
                return out
        return b""

    def _refuse_what_follows(self, after: bytes) -> None:
        while True:
            if after.strip(b"\0"):
                raise ArchiveRejected(
                    f"more data after the first {self._kind} stream (a second member or "
                    "stream): tensorflow_hub reads only the first, so a node would cache "
                    "part of the model"
                )
            after = self._raw.read(CHUNK)
            if not after:
                return


def _decompressor(reader: BinaryIO) -> tuple[str, BinaryIO]:
    head = reader.read(6)
    prefixed: BinaryIO = _Prefixed(head, reader)  # type: ignore[assignment]
    for magic, kind in ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz")):
        if head.startswith(magic):
            return kind, _FirstStream(prefixed, kind)  # type: ignore[return-value]
    return "none", prefixed


def _member_name(member: tarfile.TarInfo) -> str:
    name = member.name
    if name.startswith("/") or name.startswith("\\"):
        raise ArchiveRejected(f"absolute member path: {_shown(name)}")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveRejected(f"member path escapes the model folder: {_shown(name)}")
    if "\0" in name:
        raise ArchiveRejected(f"NUL in member path: {_shown(name)}")
    longest = max((len(os.fsencode(p)) for p in parts), default=0)
    if longest > NAME_MAX or len(os.fsencode(name)) > PATH_MAX:
        raise ArchiveRejected(f"member path too long to extract: {_shown(name)}")
    return "/".join(parts)


def _kind_problem(member: tarfile.TarInfo) -> str | None:
    name = _shown(member.name)
    if member.issym():
        return f"symlink: {name} -> {_shown(member.linkname)}"
    if member.islnk():
        return f"hard link: {name} -> {_shown(member.linkname)}"
    if member.ischr() or member.isblk():
        return f"device file: {name}"
    if member.isfifo():
        return f"fifo: {name}"
    if member.issparse() or member.type == tarfile.GNUTYPE_SPARSE:
        return f"sparse member: {name}"
    if member.type == tarfile.CONTTYPE:
        return f"contiguous-file member: {name}"
    if not (member.isfile() or member.isdir()):
        return f"unsupported member type {member.type!r}: {name}"
    return None


@dataclass(frozen=True)
class Capture:
    """A root member to keep in memory while the archive is checked (a SavedModel's
    `saved_model.pb`, whose signatures and ops are read next), up to `max_bytes`."""

    name: str
    max_bytes: int


def inspect_archive(
    reader: BinaryIO,
    compressed_size: int,
    caps: ArchiveLimits,
    extract_to: Path | None = None,
    capture: Capture | None = None,
) -> ArchiveFacts:
    """Validate a model archive read from `reader`; extract it into `extract_to` if given.

    Raises ArchiveRejected with the reason. On rejection, a partial extraction may be
    left in `extract_to`: callers extract into a temporary folder and rename on success.
    """
    try:
        compression, unpacked = _decompressor(reader)
        limits = _Budget(compressed_size, caps)
        return _walk(_Metered(unpacked, limits), compression, extract_to, limits, capture)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        # gzip raises BadGzipFile/EOFError, bz2 OSError, tarfile ReadError: all mean
        # the bytes are not an intact archive.
        raise ArchiveRejected(f"corrupt or truncated archive: {bounded(str(exc), SHOWN)}") from None
    except (ValueError, UnicodeError) as exc:
        # tarfile parses numbers and PAX records from the bytes; malformed ones raise these.
        raise ArchiveRejected(f"malformed tar header: {bounded(str(exc), SHOWN)}") from None


def _walk(
    metered: _Metered,
    compression: str,
    extract_to: Path | None,
    limits: _Budget,
    capture: Capture | None,
) -> ArchiveFacts:
    directories: set[str] = {""}
    file_names: set[str] = set()
    files = 0
    size = 0
    root_files: set[str] = set()
    captured: bytes | None = None
    with tarfile.open(  # type: ignore[call-overload]
        fileobj=metered, mode="r|", tarinfo=_BoundedInfo
    ) as tar:
        for member in tar:
            problem = _kind_problem(member)
            if problem:
                raise ArchiveRejected(problem)
            name = _member_name(member)
            parent = name.rpartition("/")[0]
            if parent not in directories:
                raise ArchiveRejected(
                    f"{_shown(name)} comes before its directory entry {_shown(parent + '/')} "
                    "(tensorflow_hub cannot extract that order)"
                )
            if member.isfile() and not name:
                raise ArchiveRejected(f"a file member with no name: {_shown(member.name)}")
            if name in file_names or (name in directories and (member.isfile() or name)):
                raise ArchiveRejected(f"two members named {_shown(name)}")
            if member.isdir():
                directories.add(name)
                if extract_to is not None:
                    (extract_to / name).mkdir(parents=True, exist_ok=True)
                continue
            size += member.size
            why = f"{_shown(member.name)} declares {member.size} bytes; "
            limits.check(size, "members declare", why)
            file_names.add(name)
            files += 1
            if "/" not in name:
                root_files.add(name)
            wanted = capture is not None and name == capture.name
            if wanted and capture is not None and member.size <= capture.max_bytes:
                captured = _read_member(tar, member)
                if extract_to is not None:
                    _write_new(extract_to / name, captured)
            elif extract_to is not None:
                _extract(tar, member, extract_to / name)
        end_of_members = tar.offset
    while metered.read(CHUNK):  # drain: gzip checks its CRC and length at the very end
        pass
    if metered.total - end_of_members < BLOCK or metered.last_nonzero_end > end_of_members:
        raise ArchiveRejected(
            "truncated: no end-of-archive marker after the last member "
            "(the archive was cut at a member boundary)"
        )
    found = recognise(root_files)
    if found is None:
        raise ArchiveRejected(f"no {looked_for()} at the archive root")
    model_format, root_file = found
    return ArchiveFacts(
        compression, files, len(directories) - 1, size, root_file, model_format, captured
    )


def _member_data(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    source = tar.extractfile(member)
    if source is None:  # pragma: no cover - isfile() members always have data
        raise ArchiveRejected(f"no data for {member.name!r}")
    return source


def _create(target: Path) -> IO[bytes]:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    return os.fdopen(fd, "wb")


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    with _create(target) as out, _member_data(tar, member) as source:
        while chunk := source.read(CHUNK):
            out.write(chunk)


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    with _member_data(tar, member) as source:
        return source.read()


def _write_new(target: Path, data: bytes) -> None:
    with _create(target) as out:
        out.write(data)
