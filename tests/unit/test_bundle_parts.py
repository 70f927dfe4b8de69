"""Parts as one stream: PartWriter cuts it, PartReader (with its read-ahead thread) gives
back exactly the bytes, in any read sizes, and refuses a bad part where it ends."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from bundle.errors import BundleError
from bundle.layout import CHUNK, Item, PartReader, PartWriter


def written(folder: Path, data: bytes, part_size: int) -> list[Item]:
    writer = PartWriter(folder, part_size)
    for i in range(0, len(data), 777_777):  # writes that straddle part ends
        writer.write(data[i : i + 777_777])
    return writer.close()


def test_reads_of_any_size_give_back_the_stream_across_parts(tmp_path: Path) -> None:
    data = os.urandom(5 * CHUNK + 12345)
    parts = written(tmp_path, data, 2 * CHUNK + 1)
    assert len(parts) == 3
    reader = PartReader(tmp_path, parts)
    got = bytearray()
    for size in (1, CHUNK, CHUNK - 1, 3 * CHUNK, 10, CHUNK):
        got += reader.read(size)
    reader.finish()
    reader.close()
    assert bytes(got) == data


def test_a_flipped_byte_is_refused_after_the_bad_parts_bytes(tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK)
    parts = written(tmp_path, data, CHUNK)
    second = tmp_path / parts[1].name
    raw = bytearray(second.read_bytes())
    raw[100] ^= 1
    second.write_bytes(bytes(raw))
    reader = PartReader(tmp_path, parts)
    assert reader.read(CHUNK) == data[:CHUNK]  # the first part is fine
    with pytest.raises(BundleError, match="part-00002 does not hash"):
        reader.read(2 * CHUNK)
    reader.close()


def test_closing_mid_stream_stops_the_read_ahead(tmp_path: Path) -> None:
    parts = written(tmp_path, os.urandom(40 * CHUNK), 64 * CHUNK)
    before = threading.active_count()
    reader = PartReader(tmp_path, parts)
    reader.read(10)
    reader.close()
    assert threading.active_count() == before
