"""Loads a .tflite file with LiteRT's Interpreter (ai-edge-litert, the older
tflite-runtime, else TensorFlow's tf.lite), allocates its tensors, prints its signatures
as JSON, and invokes it on zeros of each input's shape and type (a dimension left open,
-1 in its signature: 1). Given a folder (Kaggle's archived tfLite), each .tflite in it.

    python hub_cache/formats/probes/tflite_load.py FILE_OR_FOLDER
Run in a subprocess, by an environment's runtime Python (verify.runtimes): a model that
crashes the interpreter takes only the probe down. Imports nothing of tfmirror's.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def _interpreter(path: str) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            from tensorflow.lite.python.interpreter import Interpreter
    return Interpreter(model_path=path)


def _shape(detail: dict[str, Any]) -> list[int]:
    """As the model declares it: -1 where a dimension is left open."""
    signature = detail.get("shape_signature")
    shape = signature if signature is not None and len(signature) else detail["shape"]
    return [int(d) for d in shape]


def _spec(detail: dict[str, Any]) -> dict[str, object]:
    dtype = detail["dtype"]
    return {
        "name": detail["name"],
        "dtype": getattr(dtype, "__name__", str(dtype)),
        "shape": _shape(detail),
    }


def main(path: str, *_libraries: str) -> None:
    files = (
        sorted(str(p) for p in Path(path).rglob("*") if p.name.lower().endswith(".tflite"))
        if os.path.isdir(path)
        else [path]
    )
    signatures, called = {}, []
    for file in files:
        name = "serving_default" if file == path else os.path.relpath(file, path)
        signatures[name] = _load(file)
    print("SIGNATURES " + json.dumps(signatures))
    for file in files:  # after every file loaded: a crash here names a run, not a load
        called += _invoke(file)
    print("CALLED " + json.dumps(sorted(called)))


def _load(path: str) -> dict[str, object]:
    interpreter = _prepared(path)
    return {
        "inputs": {d["name"]: _spec(d) for d in interpreter.get_input_details()},
        "outputs": {d["name"]: _spec(d) for d in interpreter.get_output_details()},
    }


def _prepared(path: str) -> Any:
    interpreter = _interpreter(path)
    inputs = interpreter.get_input_details()
    for detail in inputs:
        wanted = [1 if d < 0 else d for d in _shape(detail)]
        if list(detail["shape"]) != wanted:
            interpreter.resize_tensor_input(detail["index"], wanted)
    interpreter.allocate_tensors()
    return interpreter


def _invoke(path: str) -> list[str]:
    import numpy as np

    interpreter = _prepared(path)
    for detail in interpreter.get_input_details():
        zeros = np.zeros(detail["shape"], dtype=detail["dtype"])
        interpreter.set_tensor(detail["index"], zeros)
    interpreter.invoke()
    return [str(d["name"]) for d in interpreter.get_output_details()]


if __name__ == "__main__":
    main(*sys.argv[1:])
