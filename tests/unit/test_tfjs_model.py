"""The TF.js model check: the converter's real graph, quantized and layers models pass
with their facts, each hostile manifest is refused with its reason, and `@tensorflow/tfjs`
itself (from npm, when reachable) loads and runs the models this check passes, fails on
the one-byte-short shard it refuses, and asks only for shards that shard_for maps."""

from __future__ import annotations

import copy
import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hub_cache.errors import ArchiveRejected
from hub_cache.formats.tfjs_model import TfjsModel, inspect_tfjs, shard_for
from tests.support.tfjs_node import FIXTURES, tfjs_node_modules

GRAPH_SHARDS = ("group1-shard1of2.bin", "group1-shard2of2.bin")


def folder(name: str) -> tuple[bytes, dict[str, int]]:
    root = FIXTURES / name
    files = {
        p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*") if p.is_file()
    }
    return (root / "model.json").read_bytes(), files


def graph() -> tuple[dict[str, Any], dict[str, int]]:
    raw, files = folder("graph")
    return json.loads(raw), files


def check(doc: dict[str, Any], files: dict[str, int]) -> TfjsModel:
    raw = json.dumps(doc).encode()
    return inspect_tfjs(raw, {**files, "model.json": len(raw)})


def refused(doc: dict[str, Any], files: dict[str, int]) -> str:
    with pytest.raises(ArchiveRejected) as caught:
        check(doc, files)
    reason = str(caught.value)
    assert "\n" not in reason and reason.startswith("model.json: ")
    return reason


def test_the_converters_graph_model_passes_with_its_facts() -> None:
    model = inspect_tfjs(*folder("graph"))
    assert model.kind == "graph-model"
    assert model.ops == {"Const", "Placeholder", "_FusedMatMul", "Identity"}
    assert (model.weights, model.weight_bytes, model.shards) == (2, 60, GRAPH_SHARDS)
    assert model.converted_by == "TensorFlow.js Converter v4.22.0"
    assert TfjsModel.from_json(json.loads(json.dumps(model.as_json()))) == model


@pytest.mark.parametrize(("name", "weight_bytes"), [("graph_uint8", 15), ("graph_float16", 30)])
def test_quantized_weights_take_their_quantized_dtypes_size(name: str, weight_bytes: int) -> None:
    model = inspect_tfjs(*folder(name))
    assert (model.kind, model.weights, model.weight_bytes) == ("graph-model", 2, weight_bytes)


def test_the_converters_layers_model_passes_with_its_layer_classes() -> None:
    model = inspect_tfjs(*folder("layers"), where="google/dense/tfJs/1: model.json")
    assert model.kind == "layers-model"
    assert model.ops == {"Sequential", "InputLayer", "Dense"}
    assert (model.weights, model.weight_bytes, model.shards) == (2, 60, ("group1-shard1of1.bin",))


def test_an_old_layers_model_without_format_is_read_as_tfjs_reads_it() -> None:
    raw, files = folder("layers")
    doc = json.loads(raw)
    del doc["format"]
    assert check(doc, files).kind == "layers-model"
    doc = graph()[0]
    del doc["format"]
    assert "names no format" in refused(doc, graph()[1])


def test_function_library_and_initializer_ops_count_and_function_names_do_not() -> None:
    doc, files = graph()
    doc["modelTopology"]["library"] = {
        "function": [
            {"signature": {"name": "inner_fn"}, "nodeDef": [{"op": "Softmax"}, {"op": "inner_fn"}]}
        ]
    }
    doc["modelInitializer"] = {"node": [{"op": "HashTableV2"}]}
    assert check(doc, files).ops == {
        "Const",
        "Placeholder",
        "_FusedMatMul",
        "Identity",
        "Softmax",
        "HashTableV2",
    }


def test_a_string_weight_needs_at_least_its_length_prefixes() -> None:
    doc, files = graph()
    doc["weightsManifest"].append(
        {"paths": ["vocab.bin"], "weights": [{"name": "v", "shape": [3], "dtype": "string"}]}
    )
    assert check(doc, {**files, "vocab.bin": 12 + 9}).weights == 3
    assert "under the 12 its weights need at the least" in refused(doc, {**files, "vocab.bin": 11})


def test_shard_for_answers_only_the_manifests_shards() -> None:
    model = inspect_tfjs(*folder("graph"))
    assert shard_for(model, "group1-shard2of2.bin") == "group1-shard2of2.bin"
    for other in (
        "model.json",
        "../group1-shard1of2.bin",
        "group1-shard3of2.bin",
        "",
        "%2e%2e/x",
        "%ff",
    ):
        assert shard_for(model, other) is None
    spaced = TfjsModel("graph-model", frozenset(), 0, 0, ("group 1.bin",), "")
    assert shard_for(spaced, "group%201.bin") == "group 1.bin"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../x.bin", "has an empty, . or .. segment"),
        ("a/./x.bin", "has an empty, . or .. segment"),
        ("a//x.bin", "has an empty, . or .. segment"),
        ("/etc/passwd", "is not relative to model.json"),
        ("http://evil/x.bin", "is not relative to model.json"),
        ("C:x.bin", "is not relative to model.json"),
        ("a\\..\\x.bin", "holds a backslash"),
        ("x.bin?v=1", "holds a backslash, a control character, ?, #, %"),
        ("x.bin#top", "holds a backslash, a control character, ?, #, %"),
        ("%2e%2e/x.bin", "holds a backslash, a control character, ?, #, %"),
        ("x\t.bin", "shard path x\\t.bin holds a backslash, a control character"),
        ("x\n.bin", "shard path x\\n.bin holds a backslash, a control character"),
        ("x.bin ", "or a trailing space"),
        ("model.json", "names the model.json itself"),
    ],
)
def test_a_shard_path_outside_the_model_is_refused(path: str, reason: str) -> None:
    doc, files = graph()
    doc["weightsManifest"][0]["paths"][1] = path
    assert reason in refused(doc, {**files, path: 28})


def test_a_missing_shard_is_refused() -> None:
    doc, files = graph()
    del files[GRAPH_SHARDS[1]]
    assert (
        f"shard {GRAPH_SHARDS[1]} is named in weightsManifest but is not in the folder"
        in refused(doc, files)
    )


@pytest.mark.parametrize(
    ("size", "gap"),
    [(27, "(one byte short)"), (29, "(one byte too long)"), (0, "(28 bytes short)")],
)
def test_a_shard_of_the_wrong_size_is_refused(size: int, gap: str) -> None:
    doc, files = graph()
    reason = refused(doc, {**files, GRAPH_SHARDS[1]: size})
    held = 32 + size
    assert (
        f"group 1 (shards from {GRAPH_SHARDS[0]}) needs 60 bytes for its weights, "
        f"its shards hold {held} {gap}" in reason
    )


def test_a_file_the_manifest_does_not_name_is_refused() -> None:
    doc, files = graph()
    reason = refused(doc, {**files, "notes/extra.bin": 5, "zz.txt": 1})
    assert (
        "notes/extra.bin is in the folder but the manifest does not name it (and 1 more)" in reason
    )


def test_a_shard_listed_twice_is_refused() -> None:
    doc, files = graph()
    doc["weightsManifest"].append(copy.deepcopy(doc["weightsManifest"][0]))
    doc["weightsManifest"][1]["weights"] = []
    assert f"shard {GRAPH_SHARDS[0]} is listed twice" in refused(doc, files)


def test_a_weight_listed_twice_is_refused() -> None:
    doc, files = graph()
    weights = doc["weightsManifest"][0]["weights"]
    weights[1]["name"] = weights[0]["name"]
    assert f"weight {weights[0]['name']} is listed twice" in refused(doc, files)


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        ([-1, 3], "has a dim that is not a whole number"),
        ([4.5, 3], "has a dim that is not a whole number"),
        ([True, 3], "has a dim that is not a whole number"),
        (["4", 3], "has a dim that is not a whole number"),
        ("4x3", "is not a list of at most 254 dims"),
        ([2**27] * 3, "declares over 2^53 elements"),
    ],
)
def test_a_bad_shape_is_refused(shape: object, reason: str) -> None:
    doc, files = graph()
    doc["weightsManifest"][0]["weights"][0]["shape"] = shape
    assert reason in refused(doc, files)


def test_a_2gb_shape_is_refused_by_the_bytes_it_needs() -> None:
    doc, files = graph()
    doc["weightsManifest"][0]["weights"][0]["shape"] = [2**29, 1]  # 2 GiB of float32
    assert f"needs {2**31 + 12} bytes for its weights, its shards hold 60" in refused(doc, files)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"dtype": "float16"}, "has dtype 'float16', which tfjs does not decode"),
        ({"quantization": {"dtype": "int4"}}, "quantization dtype is not uint8, uint16 or float16"),
        ({"quantization": {"dtype": "uint8"}}, "without a numeric scale and min"),
        (
            {"dtype": "int32", "quantization": {"dtype": "float16"}},
            "does not dequantize float16 to 'int32'",
        ),
        ({"name": ""}, "a weightsManifest entry has no name"),
    ],
)
def test_a_weight_tfjs_cannot_decode_is_refused(change: dict[str, object], reason: str) -> None:
    doc, files = graph()
    doc["weightsManifest"][0]["weights"][0].update(change)
    assert reason in refused(doc, files)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"format": "graph-model",', "is not UTF-8 JSON"),
        (b"\xff\xfe{}", "is not UTF-8 JSON"),
        (b'{"a": NaN}', "is not UTF-8 JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nests deeper than this reader follows"),
        (b"[]", "its JSON is not an object"),
        (b'{"format": "graph-model"}', "has no modelTopology object"),
        (b'{"format": "tflite", "modelTopology": {}}', "its format 'tflite' is neither"),
        (
            b'{"format": "graph-model", "modelTopology": {}}',
            "weightsManifest is not a list of groups",
        ),
        (
            b'{"format": "graph-model", "modelTopology": {}, '
            b'"weightsManifest": [{"paths": [], "weights": []}]}',
            "group 1's paths is not a non-empty list of strings",
        ),
    ],
)
def test_a_model_json_tfjs_cannot_read_is_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(ArchiveRejected, match=r"^model\.json: ") as caught:
        inspect_tfjs(raw, {"model.json": len(raw)})
    assert reason in str(caught.value)


def test_model_json_over_a_pages_limit_or_of_another_size_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw, files = folder("graph")
    monkeypatch.setattr("hub_cache.formats.tfjs_model.MAX_PAGE", len(raw) - 1)
    with pytest.raises(ArchiveRejected, match=f"is {len(raw)} bytes, over the {len(raw) - 1}"):
        inspect_tfjs(raw, files)
    monkeypatch.undo()
    with pytest.raises(
        ArchiveRejected, match=f"declares 5 bytes for model.json, it holds {len(raw)}"
    ):
        inspect_tfjs(raw, {**files, "model.json": 5})


def test_nested_models_and_wrapped_layers_name_their_classes() -> None:
    raw, files = folder("layers")
    doc = json.loads(raw)
    dense = {"class_name": "Dense", "config": {"units": 3}}
    inner = {"class_name": "Sequential", "config": {"layers": [{"class_name": "Conv1D"}]}}
    wrapped = {"class_name": "TimeDistributed", "config": {"layer": dense}}
    both = {"class_name": "Bidirectional", "config": {"layer": {"class_name": "LSTM"}}}
    both["config"]["backward_layer"] = {"class_name": "GRU"}
    doc["modelTopology"] = {
        "class_name": "Functional",
        "config": {"layers": [inner, wrapped, both]},
    }
    assert check(doc, files).ops == {
        *("Functional", "Sequential", "Conv1D", "TimeDistributed", "Dense"),
        *("Bidirectional", "LSTM", "GRU"),
    }
    # Keras 1's Sequential kept its layers as its config.
    doc["modelTopology"] = {"model_config": {"class_name": "Sequential", "config": [dense]}}
    assert check(doc, files).ops == {"Sequential", "Dense"}


def json_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict | list):
        for key, inner in value.items() if isinstance(value, dict) else enumerate(value):
            yield from json_paths(inner, (*path, key))


DELETED = object()


@pytest.mark.parametrize("name", ["graph", "graph_uint8", "layers"])
def test_any_field_replaced_or_deleted_is_passed_or_refused_never_an_error(name: str) -> None:
    raw, files = folder(name)
    original = json.loads(raw)
    for path in list(json_paths(original))[1:]:
        for odd in (DELETED, None, [], {}, "", "x", -1, 1.5, True, 2**70, [None], {"": None}):
            doc = copy.deepcopy(original)
            parent = functools.reduce(lambda node, key: node[key], path[:-1], doc)
            if odd is DELETED:
                del parent[path[-1]]
            else:
                parent[path[-1]] = odd
            try:
                check(doc, files)
            except ArchiveRejected as exc:
                assert "\n" not in str(exc)


def test_weights_past_the_cap_cost_no_more_than_parsing_their_json() -> None:
    # 300 000 (three times the cap) as 1e6 would, in a fifth of the time: the count
    # is refused before any per-weight work, so only the JSON parse grows with it.
    weights = [{"name": f"w{i}", "shape": [1], "dtype": "float32"} for i in range(300_000)]
    manifest = [{"paths": ["a.bin"], "weights": weights}]
    raw = json.dumps({"format": "graph-model", "modelTopology": {}, "weightsManifest": manifest})
    started = time.monotonic()
    json.loads(raw)
    parsed = time.monotonic() - started
    started = time.monotonic()
    with pytest.raises(ArchiveRejected, match="names over 100000 weights"):
        inspect_tfjs(raw.encode(), {"a.bin": 1_200_000, "model.json": len(raw)})
    # A ratio to the JSON parse in the same run, so a loaded machine does not fail it.
    assert time.monotonic() - started < 2 * parsed + 1


# --- @tensorflow/tfjs itself reads the fixtures ---------------------------------------

LOAD_SCRIPT = r"""
const tf = require("@tensorflow/tfjs");
const [base, input] = [process.argv[2], JSON.parse(process.argv[3])];
async function run(load) {
  try {
    const model = await load();
    return {output: await model.predict(tf.tensor2d(input)).array()};
  } catch (e) { return {error: String(e.message || e)}; }
}
(async () => {
  await tf.setBackend("cpu");
  const out = {};
  for (const name of ["graph", "graph_uint8", "graph_float16", "short", "spaced"]) {
    out[name] = await run(() => tf.loadGraphModel(`${base}/${name}`, {fromTFHub: true}));
  }
  out.layers = await run(() => tf.loadLayersModel(`${base}/layers/model.json`));
  console.log("RESULT " + JSON.stringify(out));
})();
"""


@pytest.fixture(scope="module")
def tfjs_modules(request: pytest.FixtureRequest) -> Path:
    return tfjs_node_modules(request.config)


SPACED = {GRAPH_SHARDS[0]: "shard one ä.bin", GRAPH_SHARDS[1]: "shard two ä.bin"}


@dataclass
class Served:
    base: str
    root: Path
    requests: list[str]  # each request's path and query, as the client sent it


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """The fixtures over HTTP on 127.0.0.1, plus `short/` (the graph model, its last shard
    one byte short) and `spaced/` (its shards renamed with spaces and non-ASCII, which a
    URL escapes); the server ignores `?tfjs-format=file` as tfhub.dev did."""
    root = tmp_path / "models"
    shutil.copytree(FIXTURES, root)
    shutil.copytree(FIXTURES / "graph", root / "short")
    last = root / "short" / GRAPH_SHARDS[1]
    last.write_bytes(last.read_bytes()[:-1])
    shutil.copytree(FIXTURES / "graph", root / "spaced")
    doc = json.loads((root / "spaced" / "model.json").read_text())
    doc["weightsManifest"][0]["paths"] = [SPACED[p] for p in GRAPH_SHARDS]
    (root / "spaced" / "model.json").write_text(json.dumps(doc))
    for old, new in SPACED.items():
        (root / "spaced" / old).rename(root / "spaced" / new)
    requests: list[str] = []

    class Recording(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Recording, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Served(f"http://127.0.0.1:{server.server_address[1]}", root, requests)
    server.shutdown()
    server.server_close()


def folder_of(root: Path) -> tuple[bytes, dict[str, int]]:
    return (root / "model.json").read_bytes(), {p.name: p.stat().st_size for p in root.iterdir()}


def test_tfjs_loads_and_runs_what_the_check_passes_and_fetches_only_its_shards(
    tfjs_modules: Path, served: Served, tmp_path: Path
) -> None:
    expected = json.loads((FIXTURES / "expected.json").read_text())
    script = tmp_path / "load.js"
    script.write_text(LOAD_SCRIPT)
    proc = subprocess.run(
        ["node", str(script), served.base, json.dumps(expected["input"])],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(tfjs_modules)},
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, proc.stdout + proc.stderr
    out = json.loads(line.removeprefix("RESULT "))
    for name, tolerance in [
        ("graph", 1e-5),
        ("spaced", 1e-5),
        ("graph_float16", 1e-2),
        ("graph_uint8", 5e-2),
        ("layers", 1e-5),
    ]:
        want = expected["layers" if name == "layers" else "graph"]
        assert "output" in out[name], (name, out[name])
        got = [value for row in out[name]["output"] for value in row]
        assert got == pytest.approx([value for row in want for value in row], abs=tolerance), name
    # The shard one byte short, which the check refuses, fails in tfjs too.
    assert "error" in out["short"], out["short"]
    with pytest.raises(ArchiveRejected, match="one byte short"):
        inspect_tfjs(*folder_of(served.root / "short"))
    # Every shard tfjs asked for (fromTFHub: model.json first, then the shards with its
    # query, escaped as a URL escapes them) is one shard_for maps to the manifest.
    for name in ("graph", "spaced"):
        model = inspect_tfjs(*folder_of(served.root / name))
        asked = [r for r in served.requests if r.startswith(f"/{name}/")]
        assert asked[0] == f"/{name}/model.json?tfjs-format=file", served.requests
        shards = [r.removeprefix(f"/{name}/").removesuffix("?tfjs-format=file") for r in asked[1:]]
        assert sorted(map(str, (shard_for(model, s) for s in shards))) == sorted(model.shards)
