"""The protobuf wire format, read by hand: just enough to walk the fields of a message
the mirror reads (a SavedModel's `saved_model.pb`) without TensorFlow or generated code.
A length-delimited field is a view of the bytes it holds (no copy), so a nested message
is walked where it lies and anything not asked for is skipped by its length."""

from __future__ import annotations

from collections.abc import Iterator

from hub_cache.errors import NotASavedModel


def varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise NotASavedModel("a varint runs past the end of the data")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def fields(buf: memoryview) -> Iterator[tuple[int, memoryview | int]]:
    """(field number, value) of one message: a length-delimited field's bytes as a view
    (no copy), a number for the others."""
    pos = 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
            yield number, value
        elif wire == 2:
            length, pos = varint(buf, pos)
            if pos + length > len(buf):
                raise NotASavedModel("a field runs past the end of the data")
            yield number, buf[pos : pos + length]
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise NotASavedModel(f"wire type {wire} is not in any SavedModel field read here")
        if pos > len(buf):
            raise NotASavedModel("a field runs past the end of the data")


def sub(buf: memoryview, wanted: int) -> Iterator[memoryview]:
    for number, value in fields(buf):
        if number == wanted and isinstance(value, memoryview):
            yield value


def text(view: memoryview) -> str:
    return bytes(view).decode("utf-8", "replace")


def number(buf: memoryview, wanted: int) -> int | None:
    """A varint field's value (the last one, as protobuf merges a repeated scalar), or
    None where the message leaves it at its default."""
    found = None
    for field_number, value in fields(buf):
        if field_number == wanted and isinstance(value, int):
            found = value
    return found


def signed(value: int) -> int:
    """An int64 as its varint carries it: -1 arrives as 2**64 - 1."""
    return value - 2**64 if value >= 2**63 else value
