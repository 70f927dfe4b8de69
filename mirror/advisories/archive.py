"""OSV's `all.zip` read with nothing believed first: the end record's member count, each
member's declared size and name, and their declared total are checked against the caps
before a byte of a member is read (the stdlib's zipfile would build the whole member
list first, and a million entries is a lot of it); each member then inflates at most to
its declared size (zipfile stops there and checks the CRC). A record that is not JSON or
not OSV is named and skipped; an archive that breaks a cap is refused whole."""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from mirror.advisories.errors import ArchiveRefused, RecordRefused
from mirror.advisories.records import Record, parse_record

END = struct.Struct("<4sHHHHIIH")
ZIP64_LOCATOR = struct.Struct("<4sIQI")
ZIP64_END = struct.Struct("<4sQHHIIQQQQ")
MAX_COMMENT = 0xFFFF
CENTRAL_ENTRY = 46  # the least a central directory entry takes, its name empty
RATIO = 200  # JSON deflates about 8x; a member declaring far more is a bomb
RATIO_FLOOR = 1024 * 1024  # tiny members may compress better than any ratio


@dataclass(frozen=True)
class Caps:
    records: int
    record_bytes: int
    total_bytes: int


@dataclass
class Parsed:
    records: list[Record] = field(default_factory=list)
    members: int = 0
    skipped: list[str] = field(default_factory=list)  # each refused record, and why
    ignored: int = 0  # withdrawn, or no PyPI package


def declared_members(f: BinaryIO, size: int) -> tuple[int, int]:
    """The member count and central directory size the end record (or its zip64 twin)
    declares."""
    if size < END.size:
        raise ArchiveRefused(f"{size} bytes: too short to be a zip")
    start = size - min(size, END.size + MAX_COMMENT)
    f.seek(start)
    tail = f.read(size - start)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + END.size > len(tail):
        raise ArchiveRefused("not a zip (no end-of-central-directory record)")
    entries, cd_size = END.unpack_from(tail, at)[4:6]
    end_at = start + at
    if end_at >= ZIP64_LOCATOR.size:
        f.seek(end_at - ZIP64_LOCATOR.size)
        locator = f.read(ZIP64_LOCATOR.size)
        if locator.startswith(b"PK\x06\x07"):
            record_at = ZIP64_LOCATOR.unpack(locator)[2]
            f.seek(record_at)
            record = f.read(ZIP64_END.size)
            if len(record) != ZIP64_END.size or not record.startswith(b"PK\x06\x06"):
                raise ArchiveRefused("a malformed zip64 end record")
            fields = ZIP64_END.unpack(record)
            return int(fields[7]), int(fields[8])
    return int(entries), int(cd_size)


def _checked(zf: zipfile.ZipFile, size: int, caps: Caps) -> list[zipfile.ZipInfo]:
    members = [m for m in zf.infolist() if not m.is_dir()]
    total = 0
    for member in members:
        name = member.filename
        if name.startswith("/") or "\\" in name or ".." in name.split("/") or name[1:2] == ":":
            raise ArchiveRefused(f"member {name[:200]!r}: a path outside the archive's folder")
        if member.flag_bits & 0x1:
            raise ArchiveRefused(f"member {name[:200]!r} is encrypted")
        if member.file_size > caps.record_bytes:
            raise ArchiveRefused(
                f"member {name[:200]!r} declares {member.file_size} bytes, more than a "
                f"record may hold ([advisories] max_record_kb = {caps.record_bytes // 1024})"
            )
        if member.file_size > max(RATIO * member.compress_size, RATIO_FLOOR):
            raise ArchiveRefused(
                f"archive bomb: member {name[:200]!r} declares {member.file_size} bytes "
                f"from {member.compress_size}"
            )
        total += member.file_size
    if total > caps.total_bytes:
        raise ArchiveRefused(
            f"archive bomb: members declare {total} bytes, more than [advisories] "
            f"max_uncompressed_mb = {caps.total_bytes // 2**20}"
        )
    return members


def read_archive(f: BinaryIO, size: int, caps: Caps) -> Parsed:
    """Every record of the export in `f` (`size` bytes), or ArchiveRefused."""
    count, directory = declared_members(f, size)
    # zipfile reads entries until the directory's declared size, whatever the count
    # says: a directory that can hold more entries than the cap is refused too.
    if max(count, directory // CENTRAL_ENTRY) > caps.records:
        most = max(count, directory // CENTRAL_ENTRY)
        raise ArchiveRefused(f"{most} members, more than [advisories] max_records = {caps.records}")
    f.seek(0)
    try:
        with zipfile.ZipFile(f) as zf:
            members = _checked(zf, size, caps)
            parsed = Parsed(members=len(members))
            for member, doc in _documents(zf, members, parsed):
                try:
                    record = parse_record(doc, member)
                except RecordRefused as exc:
                    parsed.skipped.append(str(exc))
                    continue
                if record is None:
                    parsed.ignored += 1
                else:
                    parsed.records.append(record)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise ArchiveRefused(f"a broken zip: {str(exc)[:200]}") from None
    return parsed


def _documents(
    zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], parsed: Parsed
) -> Iterator[tuple[str, object]]:
    for member in members:
        name = member.filename[:200]
        with zf.open(member) as stream:
            raw = stream.read(member.file_size + 1)  # zipfile stops at the declared size
        try:
            yield name, json.loads(raw)
        except RecursionError:
            parsed.skipped.append(f"{name}: JSON nested too deeply")
        except ValueError as exc:
            parsed.skipped.append(f"{name}: not JSON ({str(exc)[:120]})")
