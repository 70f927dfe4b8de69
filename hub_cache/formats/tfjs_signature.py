"""A TF.js graph model's contract: the `signature` its converter writes into `model.json`
(the converted SavedModel signature's SignatureDef, as protobuf's JSON form: inputs and
outputs by name, each `{name, dtype: "DT_FLOAT", tensorShape: {dim: [{size: "-1"}]}}`),
which is what `model.executeAsync({name: tensor})` is fed and answers with. A layers
model carries none (its inputs are in its Keras config), nor does a graph model an old
converter wrote: then it is not read, and says so."""

from __future__ import annotations

import json
from collections.abc import Mapping

from hub_cache.formats.tfjs_model import GRAPH_MODEL, LAYERS_MODEL, MODEL_JSON
from mirror.core.contracts import Contract, Shape, Signature, TensorSpec
from mirror.core.upstream import MAX_PAGE

# The one signature a converter writes; tensorflowjs_converter's --signature_name
# defaults to this, and model.json does not name it.
SIGNATURE = "serving_default"
_DT_NAMES = {"DT_FLOAT": "float32", "DT_DOUBLE": "float64", "DT_HALF": "float16"}


def _dtype(raw: object) -> str:
    if not isinstance(raw, str) or not raw.startswith("DT_"):
        return "unknown"
    return _DT_NAMES.get(raw, raw.removeprefix("DT_").lower())


def _shape(raw: object) -> Shape:
    if not isinstance(raw, Mapping) or raw.get("unknownRank"):
        return None
    dims = raw.get("dim", [])
    if not isinstance(dims, list):
        return None
    shape: list[int | None] = []
    for dim in dims:
        size = dim.get("size", "0") if isinstance(dim, Mapping) else "-1"
        try:
            number = int(size)  # int64 fields are strings in protobuf's JSON
        except (TypeError, ValueError):
            number = -1
        shape.append(None if number < 0 else number)
    return tuple(shape)


def _side(raw: object) -> list[TensorSpec]:
    if not isinstance(raw, Mapping):
        return []
    return [
        TensorSpec(str(key), _dtype(info.get("dtype")), _shape(info.get("tensorShape")))
        for key, info in raw.items()
        if isinstance(info, Mapping)
    ]


def tfjs_contract(model_json: bytes) -> Contract | str:
    """The contract a `model.json` states, or why none is read from it."""
    if len(model_json) > MAX_PAGE:
        return f"{MODEL_JSON} is over {MAX_PAGE} bytes"
    try:
        doc = json.loads(model_json.decode("utf-8").removeprefix("\ufeff"))
    except (ValueError, RecursionError):
        return f"{MODEL_JSON} is not UTF-8 JSON"
    if not isinstance(doc, dict):
        return f"{MODEL_JSON} is not a JSON object"
    if doc.get("format") == LAYERS_MODEL:
        return "a TF.js layers model: its inputs are in its Keras config, not read"
    signature = doc.get("signature")
    if doc.get("format") != GRAPH_MODEL or not isinstance(signature, Mapping):
        return f"{MODEL_JSON} states no signature"
    inputs, outputs = _side(signature.get("inputs")), _side(signature.get("outputs"))
    return Contract.of([Signature.make(SIGNATURE, inputs, outputs)], MODEL_JSON)
