"""A zip archive checked before any of it is believed: the reader Keras 3 `.keras` files
need (keras.saving.load_model opens them with the stdlib's zipfile, which trusts what the
archive declares). The end record is looked for only in the last 64 KiB + 22 bytes, as
zipfile does; the central directory must end where the end record (or its zip64 twin)
begins, so no count, size or offset is used before it is checked against the file's real
size; entries are capped; every local header must agree with its central entry, and
members may not overlap (the trick behind the best zip bombs). Names that would escape
a folder, links, special files, duplicates (also after case and Unicode folding) and
encrypted members are refused, and the declared total is held to the same caps as a
tar archive (hub_cache.archive). A member's bytes are then streamed in bounded chunks:
it must inflate to exactly its declared size, no further, with the declared CRC."""

from __future__ import annotations

import os
import re
import stat
import struct
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from hub_cache.errors import ArchiveRejected
from hub_cache.limits import NAME_MAX, PATH_MAX, RATIO_FLOOR, ArchiveLimits
from mirror.core.redact import bounded

CHUNK = 1024 * 1024
SHOWN = 200  # characters of a name quoted in a reason
MAX_COMMENT = 0xFFFF
MAX_ENTRIES = 10_000  # a Keras file holds three members and its assets
MAX_DIRECTORY = 16 * 2**20  # bytes of central directory read into memory, at most
STORED, DEFLATED = 0, 8
ENCRYPTED, PATCHED, STRONG_ENCRYPTION, UTF8_NAME = 0x1, 0x20, 0x40, 0x800
AES_METHOD = 99
MAX_EXTRACT_VERSION = 63  # zipfile.MAX_EXTRACT_VERSION: it refuses entries needing more
ZIP64_EXTRA = 0x0001
U16, U32 = 0xFFFF, 0xFFFFFFFF

END = struct.Struct("<4sHHHHIIH")
ZIP64_LOCATOR = struct.Struct("<4sIQI")
ZIP64_END = struct.Struct("<4sQHHIIQQQQ")
CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
LOCAL = struct.Struct("<4sHHHHHIIIHH")
EXTRA = struct.Struct("<HH")
END_SIG, LOCATOR_SIG, ZIP64_END_SIG = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"
CENTRAL_SIG, LOCAL_SIG = b"PK\x01\x02", b"PK\x03\x04"
DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ZipMember:
    name: str  # as zipfile names it (directories end in "/")
    is_dir: bool
    method: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int
    data_offset: int = 0  # where its compressed bytes start, once its local header is read


@dataclass(frozen=True)
class ZipDirectory:
    members: tuple[ZipMember, ...]
    uncompressed_size: int  # what the files declare, checked against the caps

    def find(self, name: str) -> ZipMember | None:
        return next((m for m in self.members if m.name == name and not m.is_dir), None)


def shown(name: str) -> str:
    return repr(bounded(name, SHOWN))


def printable(text: str, limit: int = SHOWN) -> str:
    """`text` bounded, anything unprintable escaped: a reason stays one line."""
    head = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return head if len(text) <= limit else f"{head}... ({len(text) - limit} more characters)"


def path_problem(name: str) -> str | None:
    """Why `name` is not a plain relative path inside a model folder, or None."""
    if not name:
        return "an empty name"
    if "\\" in name:
        return "a backslash in its name (a Windows path separator)"
    if name.startswith("/") or DRIVE.match(name):
        return "an absolute path"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "a control character in its name"
    parts = name.removesuffix("/").split("/")
    if ".." in parts:
        return "a path that escapes the model folder (..)"
    if any(p in ("", ".") for p in parts):
        return "a path with empty or '.' segments"
    if max(len(os.fsencode(p)) for p in parts) > NAME_MAX or len(os.fsencode(name)) > PATH_MAX:
        return "a path too long to extract"
    return None


def folded(name: str) -> str:
    """The key two names collide on when extracted on any filesystem (case, Unicode form)."""
    return unicodedata.normalize("NFC", name.removesuffix("/")).casefold()


def _read_exact(f: BinaryIO, offset: int, length: int, where: str, what: str) -> bytes:
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise ArchiveRejected(f"{where}: truncated: {what} runs past the end of the file")
    return data


def _end_of_directory(f: BinaryIO, size: int, where: str) -> tuple[int, int, int, int]:
    """(entries, directory size, directory offset, where the directory must end)."""
    if size < END.size:
        raise ArchiveRejected(f"{where}: {size} bytes, too short to be a zip")
    tail_start = size - min(size, END.size + MAX_COMMENT)
    tail = _read_exact(f, tail_start, size - tail_start, where, "the end record")
    at = tail.rfind(END_SIG)  # the last one, as zipfile takes it
    if at < 0 or at + END.size > len(tail):
        raise ArchiveRejected(f"{where}: no end-of-central-directory record (not a zip, or cut)")
    _, disk, cd_disk, on_disk, entries, cd_size, cd_offset, comment = END.unpack_from(tail, at)
    if at + END.size + comment != len(tail):
        raise ArchiveRejected(f"{where}: the zip comment does not end at the end of the file")
    if disk or cd_disk or on_disk != entries:
        raise ArchiveRejected(f"{where}: a multi-disk zip")
    end_at = tail_start + at
    if end_at >= ZIP64_LOCATOR.size:
        locator = _read_exact(f, end_at - ZIP64_LOCATOR.size, ZIP64_LOCATOR.size, where, "")
        if locator.startswith(LOCATOR_SIG):  # zipfile then believes the zip64 record alone
            return _zip64_end(f, end_at - ZIP64_LOCATOR.size, locator, where)
    if U16 in (entries,) or U32 in (cd_size, cd_offset):
        raise ArchiveRejected(f"{where}: zip64 markers in the end record but no zip64 locator")
    return entries, cd_size, cd_offset, end_at


def _zip64_end(
    f: BinaryIO, locator_at: int, locator: bytes, where: str
) -> tuple[int, int, int, int]:
    _, disk, record_at, disks = ZIP64_LOCATOR.unpack(locator)
    if disk or disks != 1:
        raise ArchiveRejected(f"{where}: a multi-disk zip64")
    if record_at + ZIP64_END.size != locator_at:
        raise ArchiveRejected(
            f"{where}: the zip64 end record is not where its locator says ({record_at})"
        )
    record = _read_exact(f, record_at, ZIP64_END.size, where, "the zip64 end record")
    sig, length, _, _, disk, cd_disk, on_disk, entries, cd_size, cd_offset = ZIP64_END.unpack(
        record
    )
    if sig != ZIP64_END_SIG or length != ZIP64_END.size - 12:
        raise ArchiveRejected(f"{where}: a malformed zip64 end record")
    if disk or cd_disk or on_disk != entries:
        raise ArchiveRejected(f"{where}: a multi-disk zip64")
    return entries, cd_size, cd_offset, record_at


def _zip64_values(extra: bytes, wanted: list[int], where: str, name: str) -> list[int]:
    """Replace the 0xFFFFFFFF fields in `wanted` (size, compressed size, offset, in
    zipfile's order) with the 8-byte values of the zip64 extra field."""
    pos = 0
    while pos + EXTRA.size <= len(extra):
        kind, length = EXTRA.unpack_from(extra, pos)
        body = extra[pos + EXTRA.size : pos + EXTRA.size + length]
        if len(body) != length:
            break
        if kind == ZIP64_EXTRA:
            values, at = list(wanted), 0
            for i, value in enumerate(values):
                if value == U32:
                    if at + 8 > len(body):
                        raise ArchiveRejected(f"{where}: {shown(name)}: a short zip64 extra field")
                    values[i] = int.from_bytes(body[at : at + 8], "little")
                    at += 8
            return values
        pos += EXTRA.size + length
    if U32 in wanted:
        raise ArchiveRejected(f"{where}: {shown(name)}: zip64 sizes with no zip64 extra field")
    return wanted


def _central_entries(directory: bytes, count: int, where: str) -> Iterator[ZipMember]:
    pos = 0
    for _ in range(count):
        if directory[pos : pos + 4] != CENTRAL_SIG or pos + CENTRAL.size > len(directory):
            raise ArchiveRejected(f"{where}: the central directory has fewer entries than declared")
        fields = CENTRAL.unpack_from(directory, pos)
        flags, method, crc, csize, usize, nlen, elen, clen = fields[3:5] + fields[7:13]
        end = pos + CENTRAL.size + nlen + elen + clen
        if end > len(directory):
            raise ArchiveRejected(f"{where}: a central directory entry runs past its end")
        raw = directory[pos + CENTRAL.size : pos + CENTRAL.size + nlen]
        extra = directory[pos + CENTRAL.size + nlen : pos + CENTRAL.size + nlen + elen]
        name = _decoded(raw, flags, where)
        usize, csize, offset = _zip64_values(extra, [usize, csize, fields[16]], where, name)
        _refuse_kind(name, flags, method, fields[15] >> 16, where)
        if fields[2] > MAX_EXTRACT_VERSION:
            raise ArchiveRejected(
                f"{where}: member {shown(name)} needs zip version {fields[2] / 10} to "
                f"extract; Python's zipfile reads up to {MAX_EXTRACT_VERSION / 10}"
            )
        yield ZipMember(name, name.endswith("/"), method, crc, csize, usize, offset)
        pos = end
    if pos != len(directory):
        raise ArchiveRejected(f"{where}: the central directory holds more than its entries")


def _decoded(raw: bytes, flags: int, where: str) -> str:
    if not flags & UTF8_NAME:
        return raw.decode("cp437")  # as zipfile decodes names without the UTF-8 flag
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ArchiveRejected(
            f"{where}: a member name that is not UTF-8: {raw[:SHOWN]!r}"
        ) from None


def _refuse_kind(name: str, flags: int, method: int, mode: int, where: str) -> None:
    problem = path_problem(name)
    if problem:
        raise ArchiveRejected(f"{where}: member {shown(name)}: {problem}")
    if flags & (ENCRYPTED | STRONG_ENCRYPTION) or method == AES_METHOD:
        raise ArchiveRejected(f"{where}: member {shown(name)} is encrypted")
    if flags & PATCHED:
        raise ArchiveRejected(f"{where}: member {shown(name)} is compressed patched data")
    if method not in (STORED, DEFLATED):
        raise ArchiveRejected(
            f"{where}: member {shown(name)} uses compression method {method} "
            "(Keras writes stored members; deflate is also read)"
        )
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        raise ArchiveRejected(f"{where}: member {shown(name)} is a symlink")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ArchiveRejected(f"{where}: member {shown(name)} is a special file ({oct(kind)})")


def read_directory(f: BinaryIO, size: int, limits: ArchiveLimits, where: str) -> ZipDirectory:
    """The members of the zip in `f` (`size` bytes), every one checked as the module
    docstring says, their local headers read; no member's data is read yet."""
    entries, cd_size, cd_offset, cd_end = _end_of_directory(f, size, where)
    if entries > MAX_ENTRIES:
        raise ArchiveRejected(f"{where}: {entries} members, more than {MAX_ENTRIES}")
    if cd_offset + cd_size != cd_end:
        raise ArchiveRejected(
            f"{where}: the central directory ({cd_size} bytes at {cd_offset}) does not end "
            f"where the end record is ({cd_end}): a lying zip, or data before it"
        )
    if cd_size > MAX_DIRECTORY or cd_size < entries * CENTRAL.size:
        raise ArchiveRejected(f"{where}: a central directory of {cd_size} bytes for {entries}")
    directory = _read_exact(f, cd_offset, cd_size, where, "the central directory")
    members = list(_central_entries(directory, entries, where))
    _refuse_duplicates(members, where)
    for member in members:
        if member.header_offset + LOCAL.size > cd_offset or member.compressed_size > cd_offset:
            raise ArchiveRejected(
                f"{where}: member {shown(member.name)} lies past the central directory"
            )
    total = sum(m.size for m in members)
    _check_budget(total, size, limits, where)
    located = [_located(f, m, where) for m in sorted(members, key=lambda m: m.header_offset)]
    for before, after in zip(located, [*located[1:], None], strict=True):
        limit = after.header_offset if after else cd_offset
        if before.data_offset + before.compressed_size > limit:
            raise ArchiveRejected(
                f"{where}: member {shown(before.name)} overlaps "
                + (f"member {shown(after.name)}" if after else "the central directory")
            )
    return ZipDirectory(tuple(located), total)


def _refuse_duplicates(members: list[ZipMember], where: str) -> None:
    seen: dict[str, str] = {}
    files = {folded(m.name) for m in members if not m.is_dir}
    for member in members:
        key = folded(member.name)
        if key in seen:
            raise ArchiveRejected(
                f"{where}: two members named {shown(member.name)}"
                + (f" and {shown(seen[key])}" if seen[key] != member.name else "")
            )
        seen[key] = member.name
        parents = key.split("/")[:-1]
        for depth in range(1, len(parents) + 1):
            if "/".join(parents[:depth]) in files:
                raise ArchiveRejected(f"{where}: member {shown(member.name)} is inside a file")
        if member.is_dir and member.size:
            raise ArchiveRejected(f"{where}: directory {shown(member.name)} holds data")


def _check_budget(total: int, size: int, limits: ArchiveLimits, where: str) -> None:
    if total > limits.max_uncompressed:
        raise ArchiveRejected(
            f"{where}: archive bomb: members declare more than "
            f"{limits.max_uncompressed // 2**20} MiB ([hub] max_uncompressed_mb)"
        )
    if total > max(limits.max_ratio * max(size, 1), RATIO_FLOOR):
        raise ArchiveRejected(
            f"{where}: archive bomb: members declare more than {limits.max_ratio:g}x "
            "the file's size ([hub] max_ratio)"
        )


def _located(f: BinaryIO, member: ZipMember, where: str) -> ZipMember:
    """`member` with where its data starts, once its local header agrees with it."""
    what = f"the local header of {shown(member.name)}"
    header = _read_exact(f, member.header_offset, LOCAL.size, where, what)
    sig, _, flags, method, _, _, crc, csize, usize, nlen, elen = LOCAL.unpack(header)
    if sig != LOCAL_SIG:
        raise ArchiveRejected(f"{where}: no local header where {shown(member.name)} should be")
    rest = _read_exact(f, member.header_offset + LOCAL.size, nlen + elen, where, what)
    if _decoded(rest[:nlen], flags, where) != member.name:
        raise ArchiveRejected(f"{where}: {what} names another file")
    if method != member.method or flags & (ENCRYPTED | STRONG_ENCRYPTION | PATCHED):
        raise ArchiveRejected(f"{where}: {what} disagrees with its central entry")
    if not flags & 0x8:  # without a data descriptor, the local header's sizes must agree
        usize, csize = _zip64_values(rest[nlen:], [usize, csize], where, member.name)
        if (crc, csize, usize) != (member.crc, member.compressed_size, member.size):
            raise ArchiveRejected(f"{where}: {what} declares other sizes than its central entry")
    data_offset = member.header_offset + LOCAL.size + nlen + elen
    return ZipMember(
        member.name,
        member.is_dir,
        member.method,
        member.crc,
        member.compressed_size,
        member.size,
        member.header_offset,
        data_offset,
    )


def member_bytes(f: BinaryIO, member: ZipMember, cap: int, where: str) -> bytes:
    """A member's bytes, when it declares at most `cap` (a config file, not the weights)."""
    if member.size > cap:
        raise ArchiveRejected(
            f"{where}: member {shown(member.name)} declares {member.size} bytes, more than "
            f"the {cap} read for it"
        )
    out = bytearray()
    stream_member(f, member, where, out.extend)
    return bytes(out)


def stream_member(
    f: BinaryIO, member: ZipMember, where: str, sink: Callable[[bytes], object] | None = None
) -> None:
    """Inflate a member chunk by chunk: refused the moment it passes its declared size,
    and unless it ends exactly there with its declared CRC."""
    name = shown(member.name)
    inflater = zlib.decompressobj(-15) if member.method == DEFLATED else None
    produced = crc = 0
    f.seek(member.data_offset)
    left = member.compressed_size
    try:
        while left:
            data = f.read(min(CHUNK, left))
            if not data:
                raise ArchiveRejected(f"{where}: truncated: member {name} is cut")
            left -= len(data)
            for piece in _inflated(inflater, data, where, name):
                produced += len(piece)
                if produced > member.size:
                    raise ArchiveRejected(
                        f"{where}: archive bomb: member {name} inflates past its declared "
                        f"{member.size} bytes"
                    )
                crc = zlib.crc32(piece, crc)
                if sink is not None:
                    sink(piece)
    except zlib.error as exc:
        raise ArchiveRejected(f"{where}: member {name}: corrupt deflate data ({exc})") from None
    if inflater is not None and not inflater.eof:
        raise ArchiveRejected(f"{where}: member {name}: the deflate stream ends early")
    if produced != member.size:
        raise ArchiveRejected(
            f"{where}: member {name} holds {produced} bytes, declares {member.size}"
        )
    if crc != member.crc:
        raise ArchiveRejected(f"{where}: member {name}: CRC mismatch (corrupt)")


def _inflated(
    inflater: zlib._Decompress | None, data: bytes, where: str, name: str
) -> Iterator[bytes]:
    if inflater is None:
        yield data
        return
    while data:
        if inflater.eof:
            raise ArchiveRejected(f"{where}: member {name}: data after its deflate stream")
        yield inflater.decompress(data, CHUNK)  # at most CHUNK out: memory stays flat
        data = inflater.unconsumed_tail
    if inflater.unused_data:
        raise ArchiveRejected(f"{where}: member {name}: data after its deflate stream")
