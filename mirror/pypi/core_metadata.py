"""A wheel's core metadata (PEP 658/714): its METADATA file, kept as a blob of its own.
Resolvers (pip since 22.3, uv) read `<file>.metadata` instead of the whole wheel, and
check it against the index's `core-metadata` sha256. The file is taken out of the
verified wheel itself, so the hash is the mirror's own: an upstream that declares a
different one is wrong about one of the two, and the wheel is refused."""

from __future__ import annotations

import re
import zipfile
import zlib
from dataclasses import dataclass
from email.parser import BytesParser
from typing import BinaryIO

from mirror.core.errors import BlobNotFound, StoreError
from mirror.core.licenses import License
from mirror.core.storage import BlobStore, HashingWriter, open_seekable
from mirror.pypi.errors import MetadataError
from mirror.pypi.package_licenses import license_of
from mirror.pypi.resolve import Wheel

# The largest METADATA on PyPI is a few hundred KB (a long description); this is ample.
MAX_METADATA = 8 * 1024 * 1024
_METADATA = re.compile(r"([^/]+)\.dist-info/METADATA")


@dataclass(frozen=True)
class CoreMetadata:
    sha256: str
    requires_python: str | None
    license: License


def _member(infos: list[zipfile.ZipInfo], filename: str) -> zipfile.ZipInfo:
    found = [info for info in infos if _METADATA.fullmatch(info.filename)]
    if len(found) > 1:
        # As pip does: the .dist-info folder named like the file (name-version).
        prefix = "-".join(filename.split("-", 2)[:2]).lower()
        found = [info for info in found if info.filename.lower().startswith(prefix + ".")]
    if len(found) != 1:
        raise MetadataError(f"{filename}: no single *.dist-info/METADATA in the wheel")
    return found[0]


def read_metadata(wheel_file: BinaryIO, filename: str) -> bytes:
    """The METADATA of a wheel open as a seekable file (read by ranges where it is not
    on disk); raises MetadataError."""
    try:
        with zipfile.ZipFile(wheel_file) as archive:
            info = _member(archive.infolist(), filename)
            # The declared size is checked before a byte is inflated, the real one after.
            if info.file_size > MAX_METADATA:
                raise MetadataError(
                    f"{filename}: METADATA declares {info.file_size} bytes, "
                    f"over the {MAX_METADATA} byte limit"
                )
            with archive.open(info) as member:
                data = member.read(MAX_METADATA + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, ValueError) as exc:
        raise MetadataError(f"{filename}: not a readable wheel ({exc})") from None
    except OSError as exc:
        raise MetadataError(f"{filename}: {exc}") from None
    if len(data) > MAX_METADATA:
        raise MetadataError(f"{filename}: METADATA is over {MAX_METADATA} bytes")
    return data


def metadata_in_store(store: BlobStore, wheel: Wheel) -> bytes:
    """The METADATA of a wheel the store holds; raises MetadataError."""
    try:
        with open_seekable(store, wheel.sha256) as blob:
            return read_metadata(blob, wheel.filename)
    except BlobNotFound as exc:
        raise MetadataError(f"{wheel.filename}: {exc}") from None


def requires_python(metadata: bytes) -> str | None:
    headers = BytesParser().parsebytes(metadata, headersonly=True)
    value = headers.get("Requires-Python")
    if value is None:
        return None
    return " ".join(str(value).split()) or None


def extract(store: BlobStore, wheel: Wheel, declared: str | None = None) -> CoreMetadata:
    """Store the wheel's METADATA as a blob; `declared` is upstream's sha256 for it."""
    data = metadata_in_store(store, wheel)
    sink = HashingWriter(store.new_blob())
    try:
        sink.write(data)
        if declared and sink.sha256 != declared:
            raise MetadataError(
                f"{wheel.filename}: upstream declares core-metadata sha256 {declared}, "
                f"the wheel's METADATA hashes to {sink.sha256}"
            )
        sha = sink.publish()
    except (MetadataError, StoreError):
        sink.discard()
        raise
    return CoreMetadata(sha, requires_python(data), license_of(data))
