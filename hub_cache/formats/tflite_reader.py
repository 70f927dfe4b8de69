"""A `.tflite` model read and checked as LiteRT reads it, without TensorFlow or the
`flatbuffers` package. First what LiteRT's FlatBuffers verifier checks before it builds
an interpreter: the `TFL3` identifier, and for every table of the model, its subgraphs,
tensors, operators, operator codes, buffers, quantization, metadata and signature defs,
its vtable and each field the schema declares inside the file and aligned, every offset,
vector and string inside the file (a length is checked against the bytes that remain
before anything is read or allocated for it); option and sparsity tables are checked up
to their vtables. Then what LiteRT's InterpreterBuilder refuses: a schema version other
than 3, an operator code, tensor or buffer index out of range, a CUSTOM op without its
name, a shape it cannot size, a constant buffer smaller than its tensor, a buffer of the
>2 GB layout (`offset`/`size`: data after the FlatBuffer) past the end of the file. What
only a kernel checks (an axis's type, a conv's rank) is left to loading the model in
its runtime; a builtin code past this table is named BUILTIN_<n>, not refused (a newer
converter; the runtime check says whether a runtime has it).

Reported: schema version, builtin, custom and Flex (Select TF) op names, subgraph count,
the main subgraph's inputs and outputs, the description. Field numbers are those of
tensorflow/compiler/mlir/lite/schema/schema.fbs (tflite_ops lists each table's fields).
The file is read by seek/read of 64 KiB pages (a few kept), so memory stays flat
whatever the size: weight bytes are never read, only their lengths and offsets checked;
counts are capped so a hostile file cannot make this loop for long.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from hub_cache.errors import ArchiveRejected
from hub_cache.formats.tflite_ops import (
    BUFFER,
    BUILTIN_OPERATORS,
    CUSTOM,
    METADATA,
    MODEL,
    OPERATOR,
    OPERATOR_CODE,
    QUANTIZATION,
    SIGNATURE_DEF,
    SUBGRAPH,
    TENSOR,
    TENSOR_MAP,
    TENSOR_TYPES,
    TYPE_SIZES,
    VARIABLE_SIZE_TYPES,
)
from mirror.core.contracts import Contract, Signature
from mirror.core.contracts import TensorSpec as ContractSpec
from mirror.core.redact import bounded

IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3
FLATBUFFER_MAX = 2**31 - 1  # flatbuffers' FLATBUFFERS_MAX_BUFFER_SIZE
PAGE = 64 * 1024
PAGES_KEPT = 16
FLEX_PREFIX = "Flex"  # LiteRT's IsFlexOp: a custom code naming a Select TF op
# Caps on what one model may hold: real models have thousands of tensors; 100,000 shared
# tensor tables read in about 1.5 s here, so the largest a cap allows takes seconds.
MAX_SUBGRAPHS = 1_000
MAX_OPERATOR_CODES = 10_000
MAX_TENSORS = 100_000  # over all subgraphs
MAX_OPERATORS = 100_000  # over all subgraphs
MAX_BUFFERS = 100_000
MAX_IO = 1_000  # inputs or outputs of the main subgraph reported
MAX_RANK = 64
SHOWN = 200  # characters of a name, description or custom code kept
INDEX_CHUNK = 16 * 1024  # int32 indices checked per read
# A model without signature defs: its main subgraph's inputs and outputs, by this name.
MAIN_SIGNATURE = "main"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the main subgraph, as LiteRT's get_input_details says it."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # a TensorType name, lower-case ("float32", "int8", ...)

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> TensorSpec:
        shape = doc.get("shape", [])
        dims = tuple(int(d) for d in shape) if isinstance(shape, list) else ()
        return cls(str(doc.get("name", "")), dims, str(doc.get("dtype", "")))


@dataclass(frozen=True)
class TfliteModel:
    """What a `.tflite` file holds, as far as the mirror checks and shows it."""

    schema_version: int
    builtin_ops: frozenset[str]  # BuiltinOperator names ("CONV_2D"); BUILTIN_<n> if newer
    custom_ops: frozenset[str]  # custom codes that are not Flex ops
    flex_ops: frozenset[str]  # custom codes of Select TF ops ("FlexMatrixInverse")
    subgraphs: int
    inputs: tuple[TensorSpec, ...]  # the main subgraph's (0): what a probe feeds zeros to
    outputs: tuple[TensorSpec, ...]
    description: str  # bounded

    def as_json(self) -> dict[str, object]:
        return {
            "schema_version": self.schema_version,
            "builtin_ops": sorted(self.builtin_ops),
            "custom_ops": sorted(self.custom_ops),
            "flex_ops": sorted(self.flex_ops),
            "subgraphs": self.subgraphs,
            "inputs": [spec.as_json() for spec in self.inputs],
            "outputs": [spec.as_json() for spec in self.outputs],
            "description": self.description,
        }

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> TfliteModel:
        def names(key: str) -> frozenset[str]:
            found = doc.get(key, [])
            return frozenset(str(n) for n in found) if isinstance(found, list) else frozenset()

        def specs(key: str) -> tuple[TensorSpec, ...]:
            found = doc.get(key, [])
            items = found if isinstance(found, list) else []
            return tuple(TensorSpec.from_json(s) for s in items if isinstance(s, dict))

        return cls(
            int(doc.get("schema_version", 0)),  # type: ignore[call-overload]
            names("builtin_ops"),
            names("custom_ops"),
            names("flex_ops"),
            int(doc.get("subgraphs", 0)),  # type: ignore[call-overload]
            specs("inputs"),
            specs("outputs"),
            str(doc.get("description", "")),
        )


def builtin_name(code: int) -> str:
    """BuiltinOperator's name for a code; a code past the table is a newer converter's."""
    return BUILTIN_OPERATORS[code] if code < len(BUILTIN_OPERATORS) else f"BUILTIN_{code}"


def tensor_type_name(number: int) -> str:
    return TENSOR_TYPES[number] if number < len(TENSOR_TYPES) else f"type_{number}"


class _Pages:
    """The file's bytes by seek/read of aligned pages, a few kept (least recently used
    dropped): tables sit near each other, weights are skipped by their lengths."""

    def __init__(self, f: BinaryIO, size: int, refuse: _Refuse) -> None:
        self.f, self.size, self.refuse = f, size, refuse
        self.kept: OrderedDict[int, bytes] = OrderedDict()

    def page(self, number: int) -> bytes:
        data = self.kept.get(number)
        if data is not None:
            self.kept.move_to_end(number)
            return data
        start = number * PAGE
        want = min(PAGE, self.size - start)
        if want <= 0:  # callers check bounds first; a negative read would read it all
            raise self.refuse(f"has no byte {start}")
        try:
            self.f.seek(start)
            data = self.f.read(want)
        except OSError as exc:
            raise self.refuse(f"cannot be read at byte {start}: {exc}") from None
        if len(data) != want:
            raise self.refuse(f"ends at byte {start + len(data)}, not at its {self.size} bytes")
        self.kept[number] = data
        if len(self.kept) > PAGES_KEPT:
            self.kept.popitem(last=False)
        return data

    def read(self, pos: int, count: int) -> bytes:
        """`count` bytes at `pos`; the caller has checked they are inside the file."""
        parts = []
        while count > 0:
            number, within = divmod(pos, PAGE)
            part = self.page(number)[within : within + count]
            parts.append(part)
            pos, count = pos + len(part), count - len(part)
        return b"".join(parts)

    def scalar(self, pos: int, fmt: struct.Struct) -> int:
        """A little-endian scalar at an aligned position (it never spans two pages)."""
        number, within = divmod(pos, PAGE)
        value: int = fmt.unpack_from(self.page(number), within)[0]
        return value


class _Refuse:
    def __init__(self, name: str) -> None:
        self.shown = bounded(name, SHOWN)

    def __call__(self, reason: str) -> ArchiveRejected:
        return ArchiveRejected(f"{self.shown}: {reason}")


U8, I8, U16, I32, U32, U64 = (struct.Struct(f) for f in ("<B", "<b", "<H", "<i", "<I", "<Q"))


@dataclass(frozen=True)
class _Table:
    pos: int
    size: int  # the table's declared size (its vtable's second entry)
    fields: tuple[int, ...]  # offset of each field from `pos`, 0 if absent
    what: str  # as a reason names it ("subgraph 0 tensor 3")


class _FlatBuffer:
    """The checks of the FlatBuffers verifier, on the parts of a model that are read."""

    def __init__(self, f: BinaryIO, size: int, name: str) -> None:
        self.refuse = _Refuse(name)
        self.size = size
        self.end = min(size, FLATBUFFER_MAX)  # the FlatBuffer itself; >2 GB data follows it
        self.pages = _Pages(f, size, self.refuse)

    def scalar(self, pos: int, fmt: struct.Struct, what: str) -> int:
        if pos < 0 or pos + fmt.size > self.end:
            raise self.refuse(f"{what} at byte {pos} lies past the end of the file")
        if pos % fmt.size:
            raise self.refuse(f"{what} at byte {pos} is not aligned to {fmt.size} bytes")
        return self.pages.scalar(pos, fmt)

    def table(self, pos: int, what: str, sizes: tuple[int, ...]) -> _Table:
        """The table at `pos`: its vtable inside the file, its size and the offsets of its
        fields, whose sizes (the schema's) are `sizes` (0: not checked): each field
        present lies inside the file, aligned, and inside the table's declared size."""
        vtable = pos - self.scalar(pos, I32, f"{what}'s vtable offset")
        vtable_size = self.scalar(vtable, U16, f"{what}'s vtable")
        if vtable_size % 2 or vtable + vtable_size > self.end:
            raise self.refuse(f"{what}'s vtable ({vtable_size} bytes at {vtable}) is invalid")
        # A vtable too short to hold the table's size has no fields (as the verifier reads
        # it). The size itself the verifier never reads; field() holds fields to it.
        table_size = self.scalar(vtable + 2, U16, f"{what}'s vtable") if vtable_size >= 4 else 4
        present = max(0, min(len(sizes), (vtable_size - 4) // 2))
        raw = self.pages.read(vtable + 4, 2 * present)
        fields = struct.unpack(f"<{present}H", raw) + (0,) * (len(sizes) - present)
        for index, (offset, size) in enumerate(zip(fields, sizes, strict=True)):
            if offset and size:
                self.check_field(pos, table_size, offset, size, f"{what}'s field {index}")
        return _Table(pos, table_size, fields, what)

    def check_field(self, pos: int, table_size: int, offset: int, size: int, what: str) -> None:
        # The verifier checks a field against the file and its alignment; its place
        # inside the table's declared size is checked too, as no builder writes otherwise.
        if offset + size > table_size:
            raise self.refuse(f"{what} lies outside the table")
        if pos + offset + size > self.end:
            raise self.refuse(f"{what} at byte {pos + offset} lies past the end of the file")
        if (pos + offset) % size:
            raise self.refuse(f"{what} at byte {pos + offset} is not aligned to {size} bytes")

    def field(self, table: _Table, index: int, fmt: struct.Struct, default: int = 0) -> int:
        offset = table.fields[index]
        if not offset:
            return default
        if offset + fmt.size > table.size:
            raise self.refuse(f"{table.what}'s field {index} lies outside the table")
        return self.scalar(table.pos + offset, fmt, f"{table.what}'s field {index}")

    def target(self, table: _Table, index: int) -> int | None:
        """Where an offset field points, or None if the field is absent."""
        offset = table.fields[index]
        if not offset:
            return None
        relative = self.field(table, index, U32)
        where = table.pos + offset
        if relative == 0 or relative > FLATBUFFER_MAX or where + relative >= self.end:
            raise self.refuse(f"{table.what}'s field {index} points past the end of the file")
        return where + relative

    def vector(self, pos: int, element: int, what: str, cap: int | None = None) -> tuple[int, int]:
        """(start of the elements, count) of the vector at `pos`: its length is checked
        against the bytes that remain before anything is read for it."""
        count = self.scalar(pos, U32, f"the {what} vector")
        start = pos + 4
        if count > (self.end - start) // element:
            raise self.refuse(
                f"the {what} vector declares {count} elements, past the end of the file"
            )
        if cap is not None and count > cap:
            raise self.refuse(f"the {what} vector has {count} elements, over the {cap} read")
        return start, count

    def vector_field(
        self, table: _Table, index: int, element: int, what: str, cap: int | None = None
    ) -> tuple[int, int]:
        pos = self.target(table, index)
        return (0, 0) if pos is None else self.vector(pos, element, what, cap)

    def string(self, table: _Table, index: int, what: str, keep: int = SHOWN) -> str | None:
        """A string field (its first `keep` characters), its NUL terminator checked."""
        pos = self.target(table, index)
        if pos is None:
            return None
        start, length = self.vector(pos, 1, what)
        if start + length >= self.end or self.pages.read(start + length, 1) != b"\0":
            raise self.refuse(f"the {what} string has no terminator inside the file")
        text = self.pages.read(start, min(length, 4 * keep)).decode("utf-8", "replace")
        return bounded(text, keep) if keep else ""

    def tables(self, start: int, count: int, what: str, sizes: tuple[int, ...]) -> Iterator[_Table]:
        for i in range(count):
            where = start + 4 * i
            relative = self.scalar(where, U32, f"{what} {i}'s offset")
            if relative == 0 or where + relative >= self.end:
                raise self.refuse(f"{what} {i}'s offset points past the end of the file")
            yield self.table(where + relative, f"{what} {i}", sizes)

    def indices(self, start: int, count: int) -> Iterator[array[int]]:
        """The int32 elements of a vector, a bounded chunk at a time."""
        for first in range(0, count, INDEX_CHUNK):
            chunk = array(
                "i", self.pages.read(start + 4 * first, 4 * min(INDEX_CHUNK, count - first))
            )
            if sys.byteorder == "big":  # the file is little-endian
                chunk.byteswap()
            yield chunk

    def in_range(self, start: int, count: int, low: int, high: int, what: str) -> None:
        """Every int32 of the vector lies in [low, high)."""
        for chunk in self.indices(start, count):
            if chunk and (min(chunk) < low or max(chunk) >= high):
                bad = next(i for i in chunk if not low <= i < high)
                raise self.refuse(f"{what} names tensor {bad}, out of range ({high} tensors)")


@dataclass
class _Counts:
    """What the subgraphs read so far hold, against the caps."""

    tensors: int = 0
    operators: int = 0


@dataclass(frozen=True)
class _OperatorCodes:
    names: tuple[tuple[str, str], ...]  # (kind, name) by index: builtin, custom or flex

    def of_kind(self, kind: str) -> frozenset[str]:
        return frozenset(name for k, name in self.names if k == kind)


def _operator_codes(fb: _FlatBuffer, model: _Table) -> _OperatorCodes:
    """Each OperatorCode's op, as LiteRT's GetBuiltinCode finds it: the larger of the
    int8 deprecated_builtin_code and the int32 builtin_code (converters write both)."""
    start, count = fb.vector_field(model, 1, 4, "operator codes", MAX_OPERATOR_CODES)
    names = []
    for code in fb.tables(start, count, "operator code", OPERATOR_CODE):
        builtin = max(fb.field(code, 0, I8), fb.field(code, 3, I32))
        if builtin < 0:
            raise fb.refuse(f"{code.what} has builtin code {builtin}, which names no operator")
        if builtin != CUSTOM:
            names.append(("builtin", builtin_name(builtin)))
            continue
        custom = fb.string(code, 1, f"{code.what}'s custom code")
        if not custom:
            raise fb.refuse(f"{code.what} is CUSTOM with no custom code")
        names.append(("flex" if custom.startswith(FLEX_PREFIX) else "custom", custom))
    return _OperatorCodes(tuple(names))


@dataclass(frozen=True)
class _Buffers:
    fb: _FlatBuffer
    start: int
    count: int

    def held(self, index: int) -> int:
        """How many bytes of data buffer `index` holds (checked by _check_buffers)."""
        (buffer,) = self.fb.tables(self.start + 4 * index, 1, f"buffer {index}", BUFFER)
        offset, size = self.fb.field(buffer, 1, U64), self.fb.field(buffer, 2, U64)
        if offset > 1:
            return size
        return self.fb.vector_field(buffer, 0, 1, f"buffer {index}'s data")[1]


def _check_buffers(fb: _FlatBuffer, model: _Table) -> _Buffers:
    """The model's buffers, each one's bytes inside the file: a `data` vector
    in the FlatBuffer, or (the >2 GB layout) `offset`/`size` bytes after it. LiteRT
    takes an offset above 1 as real (the converter writes 1 as a placeholder)."""
    if not model.fields[4]:
        raise fb.refuse("the model has no buffers")
    start, count = fb.vector_field(model, 4, 4, "buffers", MAX_BUFFERS)
    for buffer in fb.tables(start, count, "buffer", BUFFER):
        fb.vector_field(buffer, 0, 1, f"{buffer.what}'s data")
        offset, size = fb.field(buffer, 1, U64), fb.field(buffer, 2, U64)
        if offset > 1 and offset + size > fb.size:
            raise fb.refuse(
                f"{buffer.what} places {size} bytes at byte {offset}, past the end of the "
                f"file ({fb.size} bytes)"
            )
    return _Buffers(fb, start, count)


def _check_tensors(fb: _FlatBuffer, subgraph: _Table, buffers: _Buffers, counts: _Counts) -> int:
    if not subgraph.fields[0]:
        raise fb.refuse(f"{subgraph.what} has no tensors")
    start, count = fb.vector_field(subgraph, 0, 4, f"{subgraph.what}'s tensors")
    counts.tensors += count
    if counts.tensors > MAX_TENSORS:
        raise fb.refuse(f"the model has over {MAX_TENSORS} tensors, more than this mirror reads")
    for tensor in fb.tables(start, count, f"{subgraph.what} tensor", TENSOR):
        shape_at, rank = fb.vector_field(tensor, 0, 4, f"{tensor.what}'s shape", MAX_RANK)
        tensor_type = fb.field(tensor, 1, I8)
        if tensor_type < 0:
            raise fb.refuse(f"{tensor.what} has type {tensor_type}, which names no type")
        buffer = fb.field(tensor, 2, U32)
        if buffer >= buffers.count:
            raise fb.refuse(
                f"{tensor.what} uses buffer {buffer}, out of range ({buffers.count} buffers)"
            )
        fb.string(tensor, 3, f"{tensor.what}'s name", keep=0)
        _check_tensor_parts(fb, tensor)
        held = buffers.held(buffer) if buffer else 0
        if held and fb.field(tensor, 5, U8):
            raise fb.refuse(f"{tensor.what} is a variable with constant data, which LiteRT refuses")
        dims = [d for chunk in fb.indices(shape_at, rank) for d in chunk]
        _check_shape(fb, tensor, tensor_type, dims)
        if held and not tensor.fields[6]:  # sparse tensors hold fewer bytes
            _check_constant_size(fb, tensor, tensor_type, dims, held)
    return count


def _check_tensor_parts(fb: _FlatBuffer, tensor: _Table) -> None:
    """The parts of a Tensor that are only checked, not reported: quantization
    (min, max, scale, zero_point, details), sparsity, shape_signature."""
    where = fb.target(tensor, 4)
    if where is not None:
        quantization = fb.table(where, f"{tensor.what}'s quantization", QUANTIZATION)
        for field, size in ((0, 4), (1, 4), (2, 4), (3, 8)):
            fb.vector_field(quantization, field, size, f"{quantization.what} field {field}")
        _check_table_at(fb, quantization, 5, "details")
    _check_table_at(fb, tensor, 6, "sparsity")
    fb.vector_field(tensor, 7, 4, f"{tensor.what}'s shape signature")


def _check_table_at(fb: _FlatBuffer, table: _Table, field: int, role: str) -> None:
    """A table whose own fields are not read (an option table, say): its vtable checked."""
    where = fb.target(table, field)
    if where is not None:
        fb.table(where, f"{table.what}'s {role}", ())


def _check_shape(fb: _FlatBuffer, tensor: _Table, tensor_type: int, dims: list[int]) -> None:
    """LiteRT sizes every tensor but strings, resources and variants from its shape, as
    a size_t: a negative dimension, or a count that overflows 64 bits, is refused."""
    if tensor_type in VARIABLE_SIZE_TYPES:
        return
    count = 1
    for dim in dims:
        count *= dim
        if dim < 0 or count >= 2**64:
            raise fb.refuse(
                f"{tensor.what}'s shape {bounded(str(dims), 80)} has no size LiteRT takes"
            )


def _check_constant_size(
    fb: _FlatBuffer, tensor: _Table, tensor_type: int, dims: list[int], held: int
) -> None:
    """A constant tensor's buffer holds at least shape x type size bytes, as LiteRT's
    InterpreterBuilder requires (strings, resources, variants and sub-byte types vary)."""
    size = TYPE_SIZES.get(tensor_type)
    if size is None:
        return
    needed = math.prod(dims) * size
    if needed > held:
        raise fb.refuse(
            f"{tensor.what} needs {needed} bytes of constant data; its buffer holds {held}"
        )


def _check_operators(
    fb: _FlatBuffer, subgraph: _Table, codes: int, tensors: int, counts: _Counts
) -> None:
    start, count = fb.vector_field(subgraph, 3, 4, f"{subgraph.what}'s operators")
    counts.operators += count
    if counts.operators > MAX_OPERATORS:
        raise fb.refuse(
            f"the model has over {MAX_OPERATORS} operators, more than this mirror reads"
        )
    for operator in fb.tables(start, count, f"{subgraph.what} operator", OPERATOR):
        index = fb.field(operator, 0, U32)
        if index >= codes:
            raise fb.refuse(
                f"{operator.what} uses operator code {index}, out of range ({codes} codes)"
            )
        for field, role in ((1, "inputs"), (2, "outputs")):
            where, length = fb.vector_field(operator, field, 4, f"{operator.what}'s {role}")
            # -1 marks an optional input left out (kTfLiteOptionalTensor)
            fb.in_range(where, length, -1, tensors, f"{operator.what}'s {role}")
        _check_table_at(fb, operator, 4, "builtin options")
        _check_table_at(fb, operator, 12, "builtin options 2")
        for field, size, role in (
            (5, 1, "custom options"),
            (7, 1, "mutating inputs"),
            (8, 4, "intermediates"),
        ):
            fb.vector_field(operator, field, size, f"{operator.what}'s {role}")


def _specs(fb: _FlatBuffer, subgraph: _Table, field: int, role: str) -> tuple[TensorSpec, ...]:
    """The main subgraph's inputs or outputs, as LiteRT's get_input_details reports them."""
    tensors_at, _ = fb.vector_field(subgraph, 0, 4, f"{subgraph.what}'s tensors")
    start, count = fb.vector_field(subgraph, field, 4, f"{subgraph.what}'s {role}", MAX_IO)
    specs = []
    for index in (i for chunk in fb.indices(start, count) for i in chunk):
        (tensor,) = fb.tables(tensors_at + 4 * index, 1, f"{subgraph.what} tensor {index}", TENSOR)
        shape_at, rank = fb.vector_field(tensor, 0, 4, f"{tensor.what}'s shape", MAX_RANK)
        shape = tuple(d for chunk in fb.indices(shape_at, rank) for d in chunk)
        name = fb.string(tensor, 3, f"{tensor.what}'s name") or ""
        specs.append(TensorSpec(name, shape, tensor_type_name(fb.field(tensor, 1, I8))))
    return tuple(specs)


def _contract_spec(fb: _FlatBuffer, subgraph: _Table, index: int, key: str | None) -> ContractSpec:
    """Tensor `index` of `subgraph` as a contract names it: by `key` (a signature's
    name for it), else its own name; its shape as LiteRT's `shape_signature` says it
    (-1: any size), else its `shape`."""
    tensors_at, tensors = fb.vector_field(subgraph, 0, 4, f"{subgraph.what}'s tensors")
    if not 0 <= index < tensors:
        raise fb.refuse(f"a signature names tensor {index}, out of range ({tensors} tensors)")
    (tensor,) = fb.tables(tensors_at + 4 * index, 1, f"{subgraph.what} tensor {index}", TENSOR)
    shape_at, rank = fb.vector_field(tensor, 7, 4, f"{tensor.what}'s shape signature", MAX_RANK)
    if not rank:
        shape_at, rank = fb.vector_field(tensor, 0, 4, f"{tensor.what}'s shape", MAX_RANK)
    shape = tuple(None if d < 0 else d for chunk in fb.indices(shape_at, rank) for d in chunk)
    name = key if key is not None else fb.string(tensor, 3, f"{tensor.what}'s name") or ""
    return ContractSpec(name, tensor_type_name(fb.field(tensor, 1, I8)), shape)


def _main_signature(fb: _FlatBuffer, main: _Table) -> Signature:
    sides = []
    for field, role in ((1, "inputs"), (2, "outputs")):
        start, count = fb.vector_field(main, field, 4, f"{main.what}'s {role}", MAX_IO)
        indices = [i for chunk in fb.indices(start, count) for i in chunk]
        sides.append([_contract_spec(fb, main, i, None) for i in indices])
    return Signature.make(MAIN_SIGNATURE, sides[0], sides[1])


def tflite_contract(f: BinaryIO, size: int, name: str = "model.tflite") -> Contract:
    """The signatures of a `.tflite` file (checked first, as read_tflite checks it), as
    LiteRT's signature runners take and give them: each signature def's inputs and
    outputs by the names it gives them; a model without signature defs, the main
    subgraph's as get_input_details lists them, under MAIN_SIGNATURE."""
    read_tflite(f, size, name)
    fb = _FlatBuffer(f, size, name)
    model = _header(fb)
    start, count = fb.vector_field(model, 2, 4, "subgraphs", MAX_SUBGRAPHS)
    subgraphs = list(fb.tables(start, count, "subgraph", SUBGRAPH))
    start, count = fb.vector_field(model, 7, 4, "signature defs", MAX_SUBGRAPHS)
    signatures = []
    for signature in fb.tables(start, count, "signature def", SIGNATURE_DEF):
        subgraph = subgraphs[fb.field(signature, 4, U32)]  # in range: read_tflite checked
        sides = []
        for field in (0, 1):
            maps_at, maps = fb.vector_field(signature, field, 4, signature.what, MAX_IO)
            sides.append(
                [
                    _contract_spec(
                        fb,
                        subgraph,
                        fb.field(tensor_map, 1, U32),
                        fb.string(tensor_map, 0, f"{tensor_map.what}'s name") or "",
                    )
                    for tensor_map in fb.tables(maps_at, maps, "tensor map", TENSOR_MAP)
                ]
            )
        key = fb.string(signature, 2, f"{signature.what}'s key") or ""
        signatures.append(Signature.make(key, sides[0], sides[1]))
    if not signatures:
        signatures.append(_main_signature(fb, subgraphs[0]))
    return Contract.of(signatures, "model.tflite")


def _header(fb: _FlatBuffer) -> _Table:
    """The root table, once the file is long enough and says it is a TFLite model."""
    if fb.size < 8:
        raise fb.refuse(f"the file is {fb.size} bytes, too short for a TFLite model")
    identifier = fb.pages.read(4, 4)
    if identifier != IDENTIFIER:
        raise fb.refuse(f"the file identifier is {identifier!r}, not TFL3: not a TFLite model")
    root = fb.scalar(0, U32, "the root offset")
    if root < 8 or root >= fb.end:
        raise fb.refuse(f"the root offset {root} points past the end of the file")
    model = fb.table(root, "the model", MODEL)
    version = fb.field(model, 0, U32)
    if version != SCHEMA_VERSION:
        raise fb.refuse(f"schema version {version}: LiteRT reads schema version 3 only")
    return model


def _check_model_parts(fb: _FlatBuffer, model: _Table, subgraphs: int) -> None:
    """The parts of a Model that are only checked, not reported: metadata_buffer,
    metadata {name, buffer} and signature_defs {inputs, outputs, signature_key,
    subgraph_index}, whose inputs and outputs are TensorMaps {name, tensor_index}."""
    fb.vector_field(model, 5, 4, "metadata buffer")
    start, count = fb.vector_field(model, 6, 4, "metadata", MAX_OPERATOR_CODES)
    for metadata in fb.tables(start, count, "metadata", METADATA):
        fb.string(metadata, 0, f"{metadata.what}'s name", keep=0)
    start, count = fb.vector_field(model, 7, 4, "signature defs", MAX_SUBGRAPHS)
    for signature in fb.tables(start, count, "signature def", SIGNATURE_DEF):
        for field in (0, 1):
            maps_at, maps = fb.vector_field(signature, field, 4, signature.what, MAX_TENSORS)
            for tensor_map in fb.tables(maps_at, maps, f"{signature.what} tensor map", TENSOR_MAP):
                fb.string(tensor_map, 0, f"{tensor_map.what}'s name", keep=0)
        fb.string(signature, 2, f"{signature.what}'s key", keep=0)
        if fb.field(signature, 4, U32) >= subgraphs:
            raise fb.refuse(f"{signature.what} names a subgraph out of range ({subgraphs})")


def read_tflite(f: BinaryIO, size: int, name: str = "model.tflite") -> TfliteModel:
    """The facts of the `.tflite` file `f` (seekable, `size` bytes), or ArchiveRejected
    with a one-line reason naming `name` if LiteRT would not read it or it lies."""
    fb = _FlatBuffer(f, size, name)
    model = _header(fb)
    codes = _operator_codes(fb, model)
    buffers = _check_buffers(fb, model)
    start, count = fb.vector_field(model, 2, 4, "subgraphs", MAX_SUBGRAPHS)
    if not count:
        raise fb.refuse("the model has no subgraph")
    counts = _Counts()
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    for number, subgraph in enumerate(fb.tables(start, count, "subgraph", SUBGRAPH)):
        fb.string(subgraph, 4, f"{subgraph.what}'s name", keep=0)
        tensors = _check_tensors(fb, subgraph, buffers, counts)
        for field, role in ((1, "inputs"), (2, "outputs")):
            where, length = fb.vector_field(subgraph, field, 4, f"{subgraph.what}'s {role}")
            fb.in_range(where, length, 0, tensors, f"{subgraph.what}'s {role}")
        _check_operators(fb, subgraph, len(codes.names), tensors, counts)
        if number == 0:
            inputs = _specs(fb, subgraph, 1, "inputs")
            outputs = _specs(fb, subgraph, 2, "outputs")
    _check_model_parts(fb, model, count)
    return TfliteModel(
        schema_version=SCHEMA_VERSION,
        builtin_ops=codes.of_kind("builtin"),
        custom_ops=codes.of_kind("custom"),
        flex_ops=codes.of_kind("flex"),
        subgraphs=count,
        inputs=inputs,
        outputs=outputs,
        description=fb.string(model, 3, "description") or "",
    )
