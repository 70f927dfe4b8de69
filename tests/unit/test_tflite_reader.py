"""The `.tflite` reader on real models from TensorFlow's converter: the ops, inputs,
outputs and schema version TensorFlow's own LiteRT interpreter reports for the same
bytes; and hostile files (patched, cut, flipped), each refused with its reason, never
another exception, never a hang, in flat memory on a 100 MB model."""

from __future__ import annotations

import importlib.util
import io
import json
import random
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hub_cache.errors import ArchiveRejected
from hub_cache.formats.tflite_reader import TfliteModel, read_tflite

ROOT = Path(__file__).resolve().parents[2]
PER_CALL = 2.0  # seconds: a generous cap on one read of a small model


@pytest.fixture(scope="session")
def tflite_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Real models made by TensorFlow's converter (in a subprocess), and what TensorFlow's
    interpreter says of each."""
    out = tmp_path_factory.mktemp("tflite")
    subprocess.run(
        [sys.executable, "-m", "tests.support.make_tflite", str(out), "--big"],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    return out, json.loads((out / "interpreter.json").read_text())


def model_bytes(tflite_models: tuple[Path, dict[str, Any]], name: str) -> bytearray:
    return bytearray((tflite_models[0] / f"{name}.tflite").read_bytes())


def read(data: bytes | bytearray, name: str = "model.tflite") -> TfliteModel:
    return read_tflite(io.BytesIO(bytes(data)), len(data), name)


def refused(data: bytes | bytearray) -> str:
    with pytest.raises(ArchiveRejected) as caught:
        read(data, "hostile.tflite")
    reason = str(caught.value)
    assert reason.startswith("hostile.tflite: ") and "\n" not in reason
    return reason


# Just enough FlatBuffer walking to find the bytes a hostile case patches.
def u32(data: bytearray, pos: int) -> int:
    value: int = struct.unpack_from("<I", data, pos)[0]
    return value


def field_offset(data: bytearray, table: int, index: int) -> int:
    """Field `index`'s offset in the table at `table`, 0 if it is absent."""
    vtable = table - struct.unpack_from("<i", data, table)[0]
    if 4 + 2 * index >= struct.unpack_from("<H", data, vtable)[0]:
        return 0
    offset: int = struct.unpack_from("<H", data, vtable + 4 + 2 * index)[0]
    return offset


def field_at(data: bytearray, table: int, index: int) -> int:
    """Where field `index` of the table at `table` is (it must be present)."""
    offset = field_offset(data, table, index)
    assert offset, f"field {index} is absent"
    return table + offset


def elements(data: bytearray, vector: int) -> list[int]:
    return [element(data, vector, i) for i in range(u32(data, vector))]


def target(data: bytearray, table: int, index: int) -> int:
    where = field_at(data, table, index)
    return where + u32(data, where)


def element(data: bytearray, vector: int, i: int) -> int:
    where = vector + 4 + 4 * i
    return where + u32(data, where)


def model_table(data: bytearray) -> int:
    return u32(data, 0)


def first_subgraph(data: bytearray) -> int:
    return element(data, target(data, model_table(data), 2), 0)


def put(data: bytearray, pos: int, fmt: str, value: int) -> bytearray:
    patched = bytearray(data)
    struct.pack_into(fmt, patched, pos, value)
    return patched


@pytest.mark.parametrize("name", ["builtin", "flex", "offset", "big"])
def test_the_facts_are_what_litert_says(
    tflite_models: tuple[Path, dict[str, Any]], name: str
) -> None:
    path = tflite_models[0] / f"{name}.tflite"
    expected = tflite_models[1][name]
    with path.open("rb") as f:
        model = read_tflite(f, path.stat().st_size, path.name)
    assert model.schema_version == expected["schema_version"] == 3
    assert model.builtin_ops | model.custom_ops | model.flex_ops == set(expected["ops"])
    assert model.subgraphs == 1
    for specs, details in (
        (model.inputs, expected["inputs"]),
        (model.outputs, expected["outputs"]),
    ):
        assert [s.as_json() for s in specs] == details
    assert model.description == "MLIR Converted."
    assert bool(expected["allocate_error"]) == bool(model.flex_ops)
    assert TfliteModel.from_json(json.loads(json.dumps(model.as_json()))) == model


def test_builtin_and_flex_ops_are_told_apart(tflite_models: tuple[Path, dict[str, Any]]) -> None:
    builtin = read(model_bytes(tflite_models, "builtin"))
    assert builtin.builtin_ops == {"CONV_2D", "FULLY_CONNECTED", "MEAN", "SOFTMAX"}
    assert not builtin.flex_ops and not builtin.custom_ops
    flex = read(model_bytes(tflite_models, "flex"))
    assert flex.flex_ops == {"FlexMatrixInverse"}
    assert not flex.builtin_ops and not flex.custom_ops
    assert flex.inputs[0].shape == (3, 3) and flex.inputs[0].dtype == "float32"


def test_a_builtin_code_newer_than_the_table_is_named_not_refused(
    tflite_models: tuple[Path, dict[str, Any]],
) -> None:
    data = model_bytes(tflite_models, "builtin")
    codes = target(data, model_table(data), 1)
    for code in elements(data, codes):
        if struct.unpack_from("<i", data, field_at(data, code, 3))[0] == 3:  # CONV_2D
            data = put(data, field_at(data, code, 3), "<i", 500)
    assert read(data).builtin_ops == {"BUILTIN_500", "FULLY_CONNECTED", "MEAN", "SOFTMAX"}


def test_hostile_headers_are_refused(tflite_models: tuple[Path, dict[str, Any]]) -> None:
    data = model_bytes(tflite_models, "builtin")
    assert "too short" in refused(data[:7])
    assert "identifier is b'TFL2', not TFL3" in refused(data[:4] + b"TFL2" + data[8:])
    assert "the root offset 4000000 points past the end" in refused(put(data, 0, "<I", 4_000_000))
    version = field_at(data, model_table(data), 0)
    assert "schema version 2: LiteRT reads schema version 3 only" in refused(
        put(data, version, "<I", 2)
    )


@pytest.mark.parametrize("vector_field", [2, 4])  # subgraphs, buffers
def test_a_vector_length_of_2_to_the_31_is_refused(
    tflite_models: tuple[Path, dict[str, Any]], vector_field: int
) -> None:
    data = model_bytes(tflite_models, "builtin")
    vector = target(data, model_table(data), vector_field)
    reason = refused(put(data, vector, "<I", 2**31))
    assert "vector declares 2147483648 elements, past the end of the file" in reason


def test_an_offset_past_the_end_inside_a_table_is_refused(
    tflite_models: tuple[Path, dict[str, Any]],
) -> None:
    data = model_bytes(tflite_models, "builtin")
    subgraphs = field_at(data, model_table(data), 2)
    reason = refused(put(data, subgraphs, "<I", len(data)))
    assert "the model's field 2 points past the end of the file" in reason
    vtable = model_table(data) - struct.unpack_from("<i", data, model_table(data))[0]
    assert "field 2 lies outside the table" in refused(put(data, vtable + 8, "<H", 0xFFF0))


def test_indices_out_of_range_are_refused(tflite_models: tuple[Path, dict[str, Any]]) -> None:
    data = model_bytes(tflite_models, "builtin")
    subgraph = first_subgraph(data)
    inputs = target(data, subgraph, 1)
    assert "subgraph 0's inputs names tensor 999, out of range" in refused(
        put(data, inputs + 4, "<i", 999)
    )
    tensors = target(data, subgraph, 0)
    tensor = next(t for t in elements(data, tensors) if field_offset(data, t, 2))
    assert "uses buffer 70000, out of range" in refused(
        put(data, field_at(data, tensor, 2), "<I", 70000)
    )
    operators = target(data, subgraph, 3)
    operator = next(o for o in elements(data, operators) if field_offset(data, o, 0))
    assert "uses operator code 9, out of range (4 codes)" in refused(
        put(data, field_at(data, operator, 0), "<I", 9)
    )


def test_a_buffer_after_the_flatbuffer_must_be_inside_the_file(
    tflite_models: tuple[Path, dict[str, Any]],
) -> None:
    data = model_bytes(tflite_models, "offset")
    buffers = target(data, model_table(data), 4)
    for i, buffer in enumerate(elements(data, buffers)):
        if field_offset(data, buffer, 2):  # it has offset and size
            reason = refused(put(data, field_at(data, buffer, 2), "<Q", len(data)))
            assert f"buffer {i} places {len(data)} bytes at byte" in reason
            assert f"past the end of the file ({len(data)} bytes)" in reason
            return
    pytest.fail("no buffer with offset and size")


def timed_read(data: bytearray) -> None:
    started = time.monotonic()
    try:
        read(data)
    except ArchiveRejected as exc:
        assert str(exc).startswith("model.tflite: ") and "\n" not in str(exc)
    assert time.monotonic() - started < PER_CALL


@pytest.mark.parametrize("name", ["builtin", "flex"])
def test_every_cut_is_refused(tflite_models: tuple[Path, dict[str, Any]], name: str) -> None:
    data = model_bytes(tflite_models, name)
    cuts = sorted(random.Random(34).sample(range(len(data)), 200))
    for cut in cuts:
        with pytest.raises(ArchiveRejected):
            read(data[:cut])


def test_flipped_bytes_are_read_or_refused(tflite_models: tuple[Path, dict[str, Any]]) -> None:
    data = model_bytes(tflite_models, "builtin")
    rng = random.Random(34)
    for _ in range(500):
        flipped = bytearray(data)
        flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        timed_read(flipped)


def test_reading_100_mb_keeps_memory_flat(tflite_models: tuple[Path, dict[str, Any]]) -> None:
    path = tflite_models[0] / "big.tflite"
    assert path.stat().st_size > 100_000_000
    # The child's peak RSS (VmHWM): getrusage's ru_maxrss would carry pytest's own peak
    # across fork and exec.
    child = (
        "import os, re, sys\n"
        "from hub_cache.formats.tflite_reader import read_tflite\n"
        "with open(sys.argv[1], 'rb') as f:\n"
        "    model = read_tflite(f, os.path.getsize(sys.argv[1]))\n"
        "peak = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read())[1]\n"
        "print(sorted(model.builtin_ops), peak)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", child, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=30,
    )
    ops, peak_kb = proc.stdout.rsplit(" ", 1)
    assert ops == "['FULLY_CONNECTED']"
    assert int(peak_kb) < 64 * 1024


def with_tensors_named(data: bytearray, times: int) -> bytearray:
    """The model with subgraph 0's tensors replaced by one small tensor table named
    `times` over (a FlatBuffer may share a table; the vector sits after the old bytes,
    its entries pointing forward to the one table after it)."""
    out = bytearray(data) + bytes(-len(data) % 8)
    vector = len(out)
    table = vector + 4 + 4 * times + 4  # after the vector and a 4-byte vtable
    out += struct.pack("<I", times)
    out += b"".join(struct.pack("<I", table - (vector + 4 + 4 * i)) for i in range(times))
    out += struct.pack("<HHi", 4, 4, 4)  # vtable: 4 bytes, table 4 bytes; the table
    where = field_at(data, first_subgraph(data), 0)
    struct.pack_into("<I", out, where, vector - where)
    return out


def test_tensor_counts_are_capped(tflite_models: tuple[Path, dict[str, Any]]) -> None:
    data = model_bytes(tflite_models, "builtin")
    shared = read(with_tensors_named(data, 1000))  # the ops' indices are all below 1000
    assert shared.inputs[0].shape == () and shared.builtin_ops == read(data).builtin_ops
    started = time.monotonic()
    reason = refused(with_tensors_named(data, 1_000_000))
    assert "the model has over 100000 tensors, more than this mirror reads" in reason
    assert time.monotonic() - started < PER_CALL


def constant_tensor(data: bytearray) -> int:
    """A tensor of subgraph 0 whose buffer holds data."""
    buffers = target(data, model_table(data), 4)
    for tensor in elements(data, target(data, first_subgraph(data), 0)):
        if field_offset(data, tensor, 2) and field_offset(data, tensor, 0):
            buffer = element(data, buffers, u32(data, field_at(data, tensor, 2)))
            if field_offset(data, buffer, 0) and u32(data, target(data, buffer, 0)):
                return tensor
    raise AssertionError("no constant tensor")


def test_shapes_litert_cannot_hold_are_refused(tflite_models: tuple[Path, dict[str, Any]]) -> None:
    data = model_bytes(tflite_models, "builtin")
    first_dim = target(data, constant_tensor(data), 0) + 4
    dim = u32(data, first_dim)
    reason = refused(put(data, first_dim, "<i", dim * 1000))
    assert "bytes of constant data; its buffer holds" in reason
    assert "has no size LiteRT takes" in refused(put(data, first_dim, "<i", -5))


def test_a_field_that_is_not_read_is_still_checked(
    tflite_models: tuple[Path, dict[str, Any]],
) -> None:
    data = model_bytes(tflite_models, "builtin")
    code = element(data, target(data, model_table(data), 1), 0)
    vtable = code - struct.unpack_from("<i", data, code)[0]
    reason = refused(put(data, vtable + 4 + 2 * 2, "<H", 32))  # OperatorCode.version
    assert "operator code 0's field 2 lies outside the table" in reason


LITERT_VERDICTS = """
import sys
from ai_edge_litert.interpreter import Interpreter
for path in sys.argv[1:]:
    try:
        Interpreter(model_path=path).allocate_tensors()
        print("loads", path, flush=True)
    except Exception:
        print("refused", path, flush=True)
"""


@pytest.mark.skipif(
    importlib.util.find_spec("ai_edge_litert") is None, reason="ai-edge-litert is not installed"
)
def test_the_reader_refuses_what_litert_refuses(
    tflite_models: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """Bit flips of a real model through the reader and through ai-edge-litert's own
    interpreter (build and allocate): the reader refuses nothing LiteRT loads but a
    field outside its table's declared size, a lie no builder writes and LiteRT's
    verifier does not look for. (The reverse differs by design: what only a kernel
    checks is left to loading the model in its runtime.)"""
    data = model_bytes(tflite_models, "builtin")
    rng = random.Random(35)
    paths = []
    for i in range(300):
        flipped = bytearray(data)
        flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        paths.append(tmp_path / f"{i}.tflite")
        paths[-1].write_bytes(flipped)
    loads: set[str] = set()
    pending = [str(p) for p in paths]
    while pending:  # a child that crashes on one file goes on after it
        run = subprocess.run(
            [sys.executable, "-c", LITERT_VERDICTS, *pending],
            capture_output=True,
            text=True,
            timeout=300,
        )
        seen = [line.split(" ", 1) for line in run.stdout.splitlines()]
        loads |= {path for verdict, path in seen if verdict == "loads"}
        pending = pending[len(seen) + 1 :]
    reasons = {}
    for path in paths:
        try:
            read(path.read_bytes())
        except ArchiveRejected as exc:
            reasons[str(path)] = str(exc)
    assert loads and reasons
    stricter = {reasons[path] for path in loads & reasons.keys()}
    assert all("lies outside the table" in reason for reason in stricter), stricter
