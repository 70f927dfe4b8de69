"""Keras 3 files and KerasHub presets through hub_cache.formats.keras_model: real
`.keras` files saved by the installed Keras (and loaded back by it with safe_mode=True,
so what the validator accepts or refuses is what Keras itself does), hostile zips built
byte by byte, and a preset folder whose JSON files keras-hub 0.32.0's `save_to_preset`
wrote (tests/fixtures/kerashub-preset; its weights file is not read by the validator,
so the test lists one)."""

from __future__ import annotations

import io
import json
import random
import stat
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from hub_cache.errors import ArchiveRejected
from hub_cache.formats.keras_model import (
    KerasModel,
    inspect_keras_config,
    inspect_keras_file,
    inspect_kerashub_preset,
)
from hub_cache.limits import ArchiveLimits

LIMITS = ArchiveLimits(max_uncompressed=2**30, max_ratio=100)
PRESET = Path(__file__).resolve().parents[1] / "fixtures" / "kerashub-preset"
FLIPS = 400


@pytest.fixture(scope="module")
def keras() -> Any:
    return pytest.importorskip("keras")


@pytest.fixture(scope="module")
def saved(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Models saved by Keras itself: a Dense one, one with a Lambda layer, and one
    whose vocabulary Keras keeps as asset members. Layers are named: Keras numbers
    unnamed ones per process, so another test's models would rename them."""
    folder = tmp_path_factory.mktemp("keras")
    dense = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2, activation="relu", name="dense")]
    )
    dense.save(folder / "dense.keras")
    with_lambda = keras.Sequential(
        [keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2, name="lambda")]
    )
    with_lambda.save(folder / "lambda.keras")
    words = keras.layers.TextVectorization(max_tokens=10, name="text_vectorization")
    words.adapt(["a b c", "b c d"])  # its vocabulary goes into the file's assets/
    keras.Sequential([keras.Input((1,), dtype="string"), words]).save(folder / "assets.keras")
    names = ("dense", "lambda", "assets")
    return {name: (folder / f"{name}.keras").read_bytes() for name in names}


def inspect(data: bytes, limits: ArchiveLimits = LIMITS) -> KerasModel:
    return inspect_keras_file(io.BytesIO(data), len(data), limits, "m.keras")


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def build(files: Mapping[str, bytes] | Sequence[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    raw = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(raw, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns of the duplicates some tests make
        for name, body in files.items() if isinstance(files, Mapping) else files:
            zf.writestr(name, body)
    return raw.getvalue()


def with_config(data: bytes, edit: Any) -> bytes:
    files = members(data)
    config = json.loads(files["config.json"])
    edit(config)
    files["config.json"] = json.dumps(config).encode()
    return build(files)


def patch(data: bytes, name: str, **fields: int) -> bytes:
    """Rewrite a member's flags, crc, compressed and uncompressed size in both its local
    header and its central entry, so the two still agree."""
    out = bytearray(data)
    local = {"flags": (6, "<H"), "crc": (14, "<I"), "csize": (18, "<I"), "usize": (22, "<I")}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        header = zf.getinfo(name).header_offset
    central = data.index(b"PK\x01\x02", data.rindex(b"PK\x03\x04"))
    while data[central + 46 : central + 46 + len(name)] != name.encode():
        central = data.index(b"PK\x01\x02", central + 4)
    for field, value in fields.items():
        offset, fmt = local[field]
        struct.pack_into(fmt, out, header + offset, value)
        struct.pack_into(fmt, out, central + offset + 2, value)
    return bytes(out)


def refused(data: bytes, limits: ArchiveLimits = LIMITS) -> str:
    with pytest.raises(ArchiveRejected) as caught:
        inspect(data, limits)
    reason = str(caught.value)
    assert "\n" not in reason and reason.startswith("m.keras")
    return reason


def test_a_real_keras_file_is_accepted_and_keras_loads_the_same_bytes(
    keras: Any, saved: dict[str, bytes], tmp_path: Path
) -> None:
    found = inspect(saved["dense"])
    assert found.kind == "keras-file"
    assert {"keras.Sequential", "keras.layers.Dense", "keras.layers.InputLayer"} <= found.classes
    assert found.keras_version == keras.__version__ and found.keras_hub_version == ""
    assert found.files == 3 and found.uncompressed_size == sum(
        map(len, members(saved["dense"]).values())
    )
    assert KerasModel.from_json(json.loads(json.dumps(found.as_json()))) == found
    path = tmp_path / "same.keras"
    path.write_bytes(saved["dense"])
    model = keras.saving.load_model(path, safe_mode=True)
    assert tuple(model.predict(keras.ops.zeros((1, 3)), verbose=0).shape) == (1, 2)


def test_a_real_keras_file_with_assets_is_accepted(saved: dict[str, bytes]) -> None:
    found = inspect(saved["assets"])
    assert "keras.layers.TextVectorization" in found.classes and found.files == 5
    assert any(name.startswith("assets/") for name in members(saved["assets"]))


def test_a_lambda_layer_is_refused_as_keras_safe_mode_refuses_it(
    keras: Any, saved: dict[str, bytes], tmp_path: Path
) -> None:
    reason = refused(saved["lambda"])
    assert "config.json names a Lambda layer (layers[1] 'lambda')" in reason
    assert "safe_mode refuses it, because loading it would run code" in reason
    path = tmp_path / "lambda.keras"
    path.write_bytes(saved["lambda"])
    with pytest.raises(ValueError, match="safe_mode=False"):
        keras.saving.load_model(path, safe_mode=True)


def test_a_lambda_layer_running_a_named_function_is_refused_too() -> None:
    function = {"module": "keras.activations", "class_name": "function", "config": "relu"}
    layer = {"module": "keras.layers", "class_name": "Lambda", "config": {"function": function}}
    config = {"module": "keras", "class_name": "Sequential", "config": {"layers": [layer]}}
    with pytest.raises(ArchiveRejected, match=r"Lambda layer \(layers\[0\]\): a layer that runs"):
        inspect_keras_config(json.dumps(config).encode(), "config.json")


def test_lambda_bytecode_anywhere_is_refused(saved: dict[str, bytes]) -> None:
    def bytecode_activation(config: dict[str, Any]) -> None:
        lam = {"class_name": "__lambda__", "config": {"code": "4wEAAA==", "defaults": None}}
        config["config"]["layers"][1]["config"]["activation"] = lam

    reason = refused(with_config(saved["dense"], bytecode_activation))
    assert "Python lambda's bytecode (layers[1].activation)" in reason


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ({"module": "my_pkg.layers"}, "names my_pkg.layers.Dense (layers[1] 'dense')"),
        ({"module": None, "registered_name": "Custom>MyLayer"}, "'Custom>MyLayer' (layers[1]"),
        ({"module": "os", "class_name": "function", "config": "system"}, "names os.system"),
    ],
)
def test_a_class_from_outside_keras_is_refused(
    keras: Any, saved: dict[str, bytes], edit: dict[str, Any], named: str, tmp_path: Path
) -> None:
    data = with_config(saved["dense"], lambda c: c["config"]["layers"][1].update(edit))
    reason = refused(data)
    assert named in reason and "custom" in reason
    (tmp_path / "custom.keras").write_bytes(data)
    with pytest.raises((TypeError, ValueError), match=r"[Cc]ould not"):  # nor does Keras load it
        keras.saving.load_model(tmp_path / "custom.keras", safe_mode=True)


@pytest.mark.parametrize(
    ("layer", "why"),
    [
        ({"class_name": "TFSMLayer", "config": {"filepath": "/x"}}, "outside SavedModel"),
        ({"class_name": "TorchModuleWrapper", "config": {"module": "gASV"}}, "unpickles"),
        ({"class_name": "StringLookup", "config": {"vocabulary": "/etc/passwd"}}, "'/etc/passwd'"),
        (
            {"class_name": "function", "config": "load_model", "module": "keras.saving"},
            "not a modeling API",
        ),
    ],
)
def test_what_safe_mode_refuses_is_refused(layer: dict[str, Any], why: str) -> None:
    config = {"module": "keras", "class_name": "Sequential", "config": {"layers": [layer]}}
    layer.setdefault("module", "keras.layers")
    with pytest.raises(ArchiveRejected, match=why):
        inspect_keras_config(json.dumps(config).encode(), "config.json")


@pytest.mark.parametrize(
    ("config", "why"),
    [
        (b"{not json", "is not JSON"),
        (b"[1, 2]", "not a serialized Keras object"),
        (b"[" * 100_000 + b"]" * 100_000, "nests deeper"),
        (b'{"class_name": "X", "config": ' + b"[" * 300 + b"]" * 300 + b"}", "deeper than 256"),
    ],
)
def test_a_config_that_is_not_a_keras_object_is_refused(config: bytes, why: str) -> None:
    with pytest.raises(ArchiveRejected, match=why):
        inspect_keras_config(config, "config.json")


def test_required_members_are_those_load_model_reads(saved: dict[str, bytes]) -> None:
    files = members(saved["dense"])
    assert "no config.json" in refused(
        build({k: v for k, v in files.items() if k != "config.json"})
    )
    no_weights = {k: v for k, v in files.items() if k != "model.weights.h5"}
    assert "no model.weights.h5 or model.weights.npz" in refused(build(no_weights))
    # load_model never reads metadata.json: a file without it loads, with no version known.
    without = inspect(build({k: v for k, v in files.items() if k != "metadata.json"}))
    assert without.keras_version == "" and "keras.layers.Dense" in without.classes
    assert "metadata.json is not JSON" in refused(build(files | {"metadata.json": b"{"}))


def test_zip_bombs_are_refused(saved: dict[str, bytes]) -> None:
    files = members(saved["dense"])
    zeros = b"\0" * (64 * 2**20)
    info = zipfile.ZipInfo("model.weights.h5")
    info.compress_type = zipfile.ZIP_DEFLATED
    bomb = build([(n, b) for n, b in files.items() if n != "model.weights.h5"] + [(info, zeros)])
    assert "more than 100x the file's size" in refused(bomb)  # declared honestly: the ratio
    roomy = ArchiveLimits(max_uncompressed=2**30, max_ratio=10_000)
    small = patch(bomb, "model.weights.h5", usize=1000)
    assert "'model.weights.h5' inflates past its declared 1000 bytes" in refused(small, roomy)
    huge = patch(saved["dense"], "model.weights.h5", usize=0xFFFFFFF0)
    assert "members declare more than 1024 MiB" in refused(huge, roomy)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil", "escapes the model folder"),
        ("/etc/evil", "absolute path"),
        ("C:/evil", "absolute path"),
        ("assets\\evil", "backslash"),
        ("assets/./evil", "'.' segments"),
        ("assets/\n/evil", "control character"),
    ],
)
def test_a_name_that_leaves_the_folder_is_refused(
    saved: dict[str, bytes], name: str, why: str
) -> None:
    reason = refused(build(members(saved["dense"]) | {name: b"x"}))
    assert repr(name) in reason and why in reason


def test_links_duplicates_and_encryption_are_refused(saved: dict[str, bytes]) -> None:
    files = members(saved["dense"])
    link = zipfile.ZipInfo("assets/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    assert "'assets/link' is a symlink" in refused(build([*files.items(), (link, b"/etc/passwd")]))
    twice = [*files.items(), ("config.json", b"{}")]
    assert "two members named 'config.json'" in refused(build(twice))
    folded = build(files | {"Config.json": b"{}"})
    assert "two members named" in refused(folded)
    secret = patch(build(files | {"assets/secret": b"x"}), "assets/secret", flags=0x1)
    assert "'assets/secret' is encrypted" in refused(secret)  # zipfile's writer clears the flag


def test_a_lying_zip_is_refused(saved: dict[str, bytes]) -> None:
    data = saved["dense"]
    assert "does not end where the end record is" in refused(b"junk" + data)
    assert "the zip comment does not end" in refused(data + b"x")
    assert "CRC mismatch" in refused(patch(data, "config.json", crc=0))
    local = bytearray(data)
    struct.pack_into("<I", local, 22, 5)  # the first member's local size alone
    assert "other sizes than its central entry" in refused(bytes(local))


def test_a_truncated_file_is_refused_at_every_cut(saved: dict[str, bytes]) -> None:
    data = saved["dense"]
    for cut in (0, 1, 21, 22, 100, len(data) // 2, len(data) - 23, len(data) - 22, len(data) - 1):
        refused(data[:cut])


def flipped(data: bytes, rng: random.Random) -> Iterator[bytes]:
    for _ in range(FLIPS):
        out = bytearray(data)
        for _ in range(rng.choice([1, 1, 2, 4])):
            # Most bytes are weights the zip layer only checksums: aim at the structure too.
            at = rng.choice([rng.randrange(len(out)), rng.randrange(len(out) - 400, len(out))])
            out[at] ^= 1 << rng.randrange(8)
        yield bytes(out)


def test_flipped_bytes_give_a_verdict_and_nothing_else(saved: dict[str, bytes]) -> None:
    """Only ArchiveRejected or a verdict; and what is accepted, zipfile (which Keras
    reads with) reads whole, with the same config."""
    config = members(saved["dense"])["config.json"]
    deflated = io.BytesIO()
    with zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in members(saved["dense"]).items():
            zf.writestr(name, body)
    verdicts = {"accepted": 0, "refused": 0}
    rng = random.Random(34)
    for case in [*flipped(saved["dense"], rng), *flipped(deflated.getvalue(), rng)]:
        try:
            inspect(case)
        except ArchiveRejected:
            verdicts["refused"] += 1
            continue
        verdicts["accepted"] += 1
        with zipfile.ZipFile(io.BytesIO(case)) as zf:
            assert zf.testzip() is None and zf.read("config.json") == config
    assert verdicts["refused"] > FLIPS, verdicts


def preset_files(tmp_path: Path, config: bytes | None = None) -> dict[str, bytes]:
    files = {
        p.relative_to(PRESET).as_posix(): p.read_bytes() for p in PRESET.rglob("*") if p.is_file()
    }
    files["model.weights.h5"] = b"\x89HDF\r\n\x1a\n"
    if config is not None:
        files["config.json"] = config
    return files


def inspect_preset(files: dict[str, bytes]) -> KerasModel:
    return inspect_kerashub_preset({n: len(b) for n, b in files.items()}, files.__getitem__, "bert")


def test_a_kerashub_preset_is_accepted(tmp_path: Path) -> None:
    found = inspect_preset(preset_files(tmp_path))
    assert found.kind == "kerashub-preset" and found.files == 7
    assert (found.keras_version, found.keras_hub_version) == ("3.15.1", "0.32.0")
    assert "keras_hub.src.models.bert.bert_backbone.BertBackbone" in found.classes
    assert "keras_hub.src.models.bert.bert_tokenizer.BertTokenizer" in found.classes


def test_a_preset_with_a_lambda_or_without_weights_is_refused(tmp_path: Path) -> None:
    config = json.loads((PRESET / "config.json").read_bytes())
    config["config"]["dtype"] = {"module": "keras.layers", "class_name": "Lambda", "config": {}}
    with pytest.raises(ArchiveRejected, match=r"bert: config.json names a Lambda layer \(dtype\)"):
        inspect_preset(preset_files(tmp_path, json.dumps(config).encode()))
    files = preset_files(tmp_path)
    del files["model.weights.h5"]
    with pytest.raises(ArchiveRejected, match=r"no model\.weights\.h5 or model\.weights\.json"):
        inspect_preset(files)
    shards = {"weight_map": {"a": "model_00000.weights.h5"}}
    with pytest.raises(ArchiveRejected, match="names a shard the preset lacks"):
        inspect_preset(files | {"model.weights.json": json.dumps(shards).encode()})
    with pytest.raises(ArchiveRejected, match="no registered_name"):
        inspect_preset(preset_files(tmp_path, b'{"model_type": "bert"}'))
    with pytest.raises(ArchiveRejected, match="escapes the model folder"):
        inspect_preset(preset_files(tmp_path) | {"../x": b""})


def test_streaming_checks_every_member(saved: dict[str, bytes]) -> None:
    files = members(saved["dense"])
    cut = build(files)
    # A weights member whose stored bytes are not the declared CRC's: only streaming finds it.
    weights = zlib.crc32(files["model.weights.h5"]) ^ 1
    assert "'model.weights.h5': CRC mismatch" in refused(
        patch(cut, "model.weights.h5", crc=weights)
    )


def test_a_zip64_file_is_read_and_its_lies_refused(
    saved: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 100)  # zipfile then writes every zip64 record
    data = build(members(saved["dense"]))
    monkeypatch.undo()
    record = data.rindex(b"PK\x06\x06")
    assert data.rindex(b"PK\x06\x07") == record + 56 and b"\x01\x00\x18\x00" in data
    assert inspect(data).classes == inspect(saved["dense"]).classes
    lie = bytearray(data)
    struct.pack_into("<Q", lie, record + 48, 4)  # the directory's offset
    assert "does not end where the end record is" in refused(bytes(lie))
    short = bytearray(data)
    struct.pack_into("<Q", short, record + 40, 2**40)  # the directory's size
    assert "does not end where" in refused(bytes(short))


def test_reasons_stay_one_line_whatever_the_names(saved: dict[str, bytes]) -> None:
    def hostile(config: dict[str, Any]) -> None:
        config["config"]["layers\n"] = config["config"].pop("layers")
        config["config"]["layers\n"][1]["module"] = "evil\npkg" + "x" * 5000

    reason = refused(with_config(saved["dense"], hostile))
    assert "names evil\\npkgxx" in reason and "more characters" in reason and len(reason) < 1000
