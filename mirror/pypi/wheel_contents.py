"""A wheel checked as an installer reads it, before it enters the store. A build can make
any bytes and call them `liar-1.0-py3-none-any.whl`: an ELF library inside a wheel
tagged pure (so it skips auditwheel and goes to every target), zip names like
`../../x.pth` or `/etc/x`, a WHEEL file whose tags are not the file name's, a METADATA
naming another project, a RECORD that matches nothing. pip and uv install what the zip
holds; the mirror refuses it first, naming the first thing wrong (check_wheel lists what
it checks)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import stat
import zipfile
import zlib
from dataclasses import dataclass
from email.parser import BytesParser
from pathlib import Path
from typing import BinaryIO

from packaging.tags import Tag, parse_tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from mirror.core.redact import bounded
from mirror.pypi.errors import WheelRefused

MAX_TEXT = 8 * 1024 * 1024  # METADATA, WHEEL, RECORD
CHUNK = 1024 * 1024
SHOWN = 200
NATIVE_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
# ELF; PE ("MZ"); Mach-O 32/64 in both byte orders, and fat binaries.
NATIVE_MAGIC = (
    b"\x7fELF",
    b"MZ",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",
)


@dataclass(frozen=True)
class WheelCaps:
    max_entries: int = 200_000
    max_unpacked: int = 16 * 1024**3
    max_ratio: float = 200.0
    ratio_floor: int = 64 * 1024 * 1024  # below this, ratios of tiny wheels mean nothing


def check_wheel(
    wheel: Path | BinaryIO,
    filename: str,
    caps: WheelCaps | None = None,
    *,
    contents: bool = True,
) -> None:
    """Raise WheelRefused unless the wheel (a path, or a seekable file) is what
    `filename` says it is. `contents=False` reads only the zip's directory and METADATA
    (for a downloaded wheel, whose bytes upstream's sha256 already vouches for: names,
    the dist-info, METADATA's name and version, the declared sizes); a built wheel gets
    everything, its WHEEL tags and every RECORD hash included. What is checked:

    - names: relative, no `..`, no backslash, no duplicates, no links or devices;
    - one `.dist-info` folder, `<name>-<version>`, with METADATA whose Name and Version
      are the file name's, and WHEEL whose `Tag:` lines are exactly the file name's tags;
    - RECORD lists every file with its sha256 and size, and every one matches;
    - a pure wheel (`none-any`) holds no native code (no ELF or Mach-O file, no `.so`,
      `.pyd`, `.dylib` or `.dll`; a Windows `.exe` launcher, as setuptools ships, is
      allowed);
    - the archive caps: entries, unpacked bytes, and the ratio to the packed size,
      checked against what the zip declares before a byte is inflated."""
    caps = caps or WheelCaps()
    try:
        name, version, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        raise WheelRefused(f"{bounded(filename, SHOWN)!r} is not a wheel name") from None
    try:
        packed = wheel.stat().st_size if isinstance(wheel, Path) else _size(wheel)
        with zipfile.ZipFile(wheel) as archive:
            check = _Check(archive, filename, name, version, tags, caps, packed)
            check.run() if contents else check.structure()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError) as exc:
        raise WheelRefused(f"{filename}: not a readable zip ({exc})") from None
    except NotImplementedError as exc:  # a compression method installers cannot read
        raise WheelRefused(f"{filename}: {exc}") from None


class _Check:
    def __init__(
        self,
        archive: zipfile.ZipFile,
        filename: str,
        name: str,
        version: Version,
        tags: frozenset[Tag],
        caps: WheelCaps,
        packed: int,
    ) -> None:
        self.archive = archive
        self.filename = filename
        self.name = canonicalize_name(name)
        self.version = version
        self.tags = tags
        self.caps = caps
        self.packed = packed
        self.pure = all(t.abi == "none" and t.platform == "any" for t in tags)

    def refuse(self, why: str) -> WheelRefused:
        return WheelRefused(f"{self.filename}: {why}")

    def structure(self) -> tuple[str, dict[str, zipfile.ZipInfo]]:
        infos = self.archive.infolist()
        self._sizes(infos)
        files = self._names(infos)
        dist_info = self._dist_info(files)
        self._metadata(dist_info)
        return dist_info, files

    def run(self) -> None:
        dist_info, files = self.structure()
        self._wheel_tags(dist_info)
        self._record(dist_info, files)

    def _sizes(self, infos: list[zipfile.ZipInfo]) -> None:
        """Declared sizes, before a byte is inflated (the real ones are counted later)."""
        if len(infos) > self.caps.max_entries:
            raise self.refuse(f"{len(infos)} entries, over the cap of {self.caps.max_entries}")
        unpacked = sum(i.file_size for i in infos)
        if unpacked > self.caps.max_unpacked:
            raise self.refuse(f"declares {unpacked} bytes unpacked, over {self.caps.max_unpacked}")
        if unpacked > max(self.caps.max_ratio * self.packed, self.caps.ratio_floor):
            raise self.refuse(
                f"zip bomb: declares {unpacked} bytes unpacked, more than "
                f"{self.caps.max_ratio:g}x its {self.packed} bytes"
            )

    def _names(self, infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
        files: dict[str, zipfile.ZipInfo] = {}
        seen: set[str] = set()
        for info in infos:
            raw = info.filename
            shown = bounded(raw, SHOWN)
            if "\\" in raw or "\x00" in raw or raw.startswith("/") or ":" in raw.split("/")[0]:
                raise self.refuse(f"entry {shown!r} is not a relative path")
            parts = raw.rstrip("/").split("/")
            if any(p in ("", ".", "..") for p in parts):
                raise self.refuse(f"entry {shown!r} leaves its folder or has an empty step")
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                what = "a link" if kind == stat.S_IFLNK else "not a file"
                raise self.refuse(f"entry {shown!r} is {what}")
            key = raw.rstrip("/")
            if key in seen:
                raise self.refuse(f"entry {shown!r} appears twice")
            seen.add(key)
            if not info.is_dir():
                files[raw] = info
        return files

    def _dist_info(self, files: dict[str, zipfile.ZipInfo]) -> str:
        folders = {n.split("/", 1)[0] for n in files if n.split("/", 1)[0].endswith(".dist-info")}
        if len(folders) != 1:
            raise self.refuse(f"{len(folders)} .dist-info folders at its root, not one")
        folder = folders.pop()
        stem = folder.removesuffix(".dist-info")
        dist_name, _, dist_version = stem.rpartition("-")
        if canonicalize_name(dist_name) != self.name or not _same_version(
            dist_version, self.version
        ):
            raise self.refuse(f"its {bounded(folder, SHOWN)} is not {self.name} {self.version}")
        for needed in ("METADATA", "WHEEL", "RECORD"):
            if f"{folder}/{needed}" not in files:
                raise self.refuse(f"no {folder}/{needed}")
        return folder

    def _text(self, member: str) -> bytes:
        info = self.archive.getinfo(member)
        if info.file_size > MAX_TEXT:
            raise self.refuse(f"{member} declares {info.file_size} bytes, over {MAX_TEXT}")
        with self.archive.open(info) as handle:
            data = handle.read(MAX_TEXT + 1)
        if len(data) > MAX_TEXT:
            raise self.refuse(f"{member} is over {MAX_TEXT} bytes")
        return data

    def _metadata(self, folder: str) -> None:
        headers = BytesParser().parsebytes(self._text(f"{folder}/METADATA"), headersonly=True)
        name, version = headers.get("Name"), headers.get("Version")
        if not name or canonicalize_name(str(name)) != self.name:
            raise self.refuse(f"its METADATA names {bounded(str(name), SHOWN)!r}, not {self.name}")
        if not version or not _same_version(str(version), self.version):
            raise self.refuse(
                f"its METADATA says version {bounded(str(version), SHOWN)!r}, not {self.version}"
            )

    def _wheel_tags(self, folder: str) -> None:
        headers = BytesParser().parsebytes(self._text(f"{folder}/WHEEL"), headersonly=True)
        declared: set[Tag] = set()
        for line in headers.get_all("Tag") or []:
            try:
                declared |= parse_tag(str(line).strip())
            except ValueError:
                raise self.refuse(f"its WHEEL has a tag {bounded(str(line), SHOWN)!r}") from None
        if declared != set(self.tags):
            shown = ", ".join(sorted(str(t) for t in declared)) or "none"
            raise self.refuse(f"its WHEEL declares tags {bounded(shown, SHOWN)}, not its name's")

    def _record(self, folder: str, files: dict[str, zipfile.ZipInfo]) -> None:
        record = f"{folder}/RECORD"
        unsigned = {record, f"{record}.jws", f"{record}.p7s"}
        listed: dict[str, tuple[str, str]] = {}
        text = self._text(record).decode("utf-8", "replace")
        for row in csv.reader(io.StringIO(text)):
            if not row:
                continue
            if len(row) != 3:
                raise self.refuse(f"its RECORD has a row of {len(row)} fields")
            path, digest, size = row
            if path in listed:
                raise self.refuse(f"its RECORD lists {bounded(path, SHOWN)!r} twice")
            listed[path] = (digest, size)
        for path, info in files.items():
            if path in unsigned:
                continue
            if path not in listed:
                raise self.refuse(f"{bounded(path, SHOWN)!r} is not in its RECORD")
            self._member(path, info, *listed.pop(path))
        extra = sorted(set(listed) - unsigned)
        if extra:
            raise self.refuse(f"its RECORD lists {bounded(extra[0], SHOWN)!r}, which it lacks")

    def _member(self, path: str, info: zipfile.ZipInfo, digest: str, size: str) -> None:
        shown = bounded(path, SHOWN)
        if self.pure and (path.lower().endswith(NATIVE_SUFFIXES) or ".so." in path.lower()):
            raise self.refuse(f"tagged pure, but holds a native library {shown!r}")
        algorithm, _, expected = digest.partition("=")
        if algorithm != "sha256" or not expected:
            raise self.refuse(f"its RECORD gives {shown!r} no sha256")
        hasher = hashlib.sha256()
        count = 0
        head = b""
        with self.archive.open(info) as handle:
            while chunk := handle.read(CHUNK):
                if len(head) < 4:
                    head += chunk[: 4 - len(head)]
                count += len(chunk)
                if count > info.file_size:
                    raise self.refuse(f"{shown!r} unpacks to more than it declares")
                hasher.update(chunk)
        if self.pure and head.startswith(NATIVE_MAGIC) and not _launcher(path, head):
            raise self.refuse(f"tagged pure, but {shown!r} is native code")
        actual = base64.urlsafe_b64encode(hasher.digest()).rstrip(b"=").decode()
        if actual != expected.rstrip("="):
            raise self.refuse(f"{shown!r} does not match its RECORD's sha256")
        if size and (not size.isdigit() or int(size) != count):
            raise self.refuse(f"{shown!r} is {count} bytes, its RECORD says {bounded(size, 40)}")


def _launcher(path: str, head: bytes) -> bool:
    """A Windows `.exe` launcher (setuptools' and distlib's ship in pure wheels): never
    loaded into Python, never run on the Linux nodes this checks for."""
    return head.startswith(b"MZ") and path.lower().endswith(".exe")


def _size(handle: BinaryIO) -> int:
    at = handle.tell()
    size = handle.seek(0, io.SEEK_END)
    handle.seek(at)
    return size


def _same_version(text: str, version: Version) -> bool:
    try:
        return Version(text) == version
    except InvalidVersion:
        return False
