"""The ops a SavedModel uses, read without TensorFlow: the same set TensorFlow's own
protobuf parse gives, on real SavedModels; damaged bytes are a clear refusal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hub_cache.errors import NotASavedModel
from hub_cache.formats.saved_model_ops import saved_model_ops
from hub_cache.serving_repo import serving_name, serving_version

TF_OPS = """
import json, sys
from tensorflow.core.protobuf import saved_model_pb2
model = saved_model_pb2.SavedModel()
model.ParseFromString(open(sys.argv[1], "rb").read())
ops, functions = set(), set()
for graph in model.meta_graphs:
    ops |= {n.op for n in graph.graph_def.node}
    for f in graph.graph_def.library.function:
        functions.add(f.signature.name)
        ops |= {n.op for n in f.node_def}
version = model.meta_graphs[0].meta_info_def.tensorflow_version
print(json.dumps({"ops": sorted(ops - functions), "version": version}))
"""


@pytest.mark.parametrize("kind", ["keras", "lookup"])
def test_the_ops_are_tensorflows_own_reading(
    saved_models: tuple[Path, dict[str, Any]], kind: str
) -> None:
    import json

    pb = saved_models[0] / kind / "saved_model.pb"
    proc = subprocess.run(
        [sys.executable, "-c", TF_OPS, str(pb)], capture_output=True, text=True, check=True
    )
    expected = json.loads(proc.stdout.strip().splitlines()[-1])
    found = saved_model_ops(pb.read_bytes())
    assert sorted(found.ops) == expected["ops"]
    assert found.tensorflow_version == expected["version"]
    assert found.functions > 0
    if kind == "lookup":
        assert {"HashTableV2", "LookupTableFindV2"} <= found.ops


def test_damaged_or_foreign_bytes_are_refused_with_a_reason(
    saved_models: tuple[Path, dict[str, Any]],
) -> None:
    whole = (saved_models[0] / "keras" / "saved_model.pb").read_bytes()
    with pytest.raises(NotASavedModel, match="past the end"):
        saved_model_ops(whole[: len(whole) // 2])
    with pytest.raises(NotASavedModel, match="no meta graph"):
        saved_model_ops(b"\x08\x01")  # a schema version and nothing else
    with pytest.raises(NotASavedModel):
        saved_model_ops(b"\x0b\x00\x00")  # a group: no SavedModel field is one


def test_tf_serving_names_and_versions_come_from_the_handle() -> None:
    assert serving_version("google/imagenet/mobilenet_v2/feature_vector/5") == 5
    assert serving_version("org/model/latest") == 1
    path = "google/imagenet/mobilenet_v2/feature_vector/5"
    assert serving_name(path) == "google_imagenet_mobilenet_v2_feature_vector"
    assert serving_name(path, "mobilenet") == "mobilenet"
    kaggle = "models/google/bert/tensorFlow2/en-uncased/3"
    assert serving_name(kaggle) == "models_google_bert_tensorFlow2_en-uncased"
