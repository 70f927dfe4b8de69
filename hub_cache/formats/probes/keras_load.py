"""Loads a Keras 3 model as its users do, with `safe_mode=True` (a `.keras` file by
`keras.saving.load_model`, a KerasHub preset folder by `Backbone.from_preset`), prints
its inputs and outputs as JSON, and calls it once on zeros of its input shapes (a
dimension left open: 1).

    python hub_cache/formats/probes/keras_load.py PATH
Keras needs a backend: the environment's TensorFlow, JAX or PyTorch, else NumPy's.
Run in a subprocess, by an environment's runtime Python (verify.runtimes): a model that
crashes Keras takes only the probe down. Imports nothing of tfmirror's.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def keras_backend() -> str:
    """The backend Keras is to import with: the environment's TensorFlow, JAX or PyTorch,
    else NumPy's. (keras_runtime's listing script runs this very function.)"""
    for module in ("tensorflow", "jax", "torch"):
        try:
            importlib.import_module(module)
            return module
        except ImportError:
            pass
    return "numpy"


def _load(path: str) -> Any:
    import keras

    if os.path.isdir(path):  # a KerasHub preset
        import keras_hub

        return keras_hub.models.Backbone.from_preset(path)
    return keras.saving.load_model(path, safe_mode=True, compile=False)


def _declared(model: Any, which: str) -> Any:
    """Its inputs (or outputs) as it is called: a dict, else one tensor (a Sequential's
    `input` is None where its `inputs` list is not)."""
    one = getattr(model, which, None)
    if one is not None:
        return one
    many = getattr(model, which + "s", None) or []
    return many[0] if len(many) == 1 else None


def _spec(tensor: Any) -> dict[str, object]:
    return {"dtype": str(tensor.dtype), "shape": [d for d in tensor.shape]}


def main(path: str, *_libraries: str) -> None:
    os.environ.setdefault("KERAS_BACKEND", keras_backend())
    import keras
    import numpy as np

    model = _load(path)
    inputs, outputs = _declared(model, "input"), _declared(model, "output")
    if inputs is None or outputs is None:  # a subclassed model declares none
        print("SIGNATURES {}")
        return
    named = inputs if isinstance(inputs, dict) else {"input": inputs}
    outputs = outputs if isinstance(outputs, dict) else {"output": outputs}
    signature = {
        "inputs": {k: _spec(v) for k, v in named.items()},
        "outputs": {k: _spec(v) for k, v in outputs.items()},
    }
    print("SIGNATURES " + json.dumps({"call": signature}))
    feed = keras.tree.map_structure(
        lambda t: np.zeros([1 if d is None else d for d in t.shape], dtype=str(t.dtype)), inputs
    )
    model(feed, training=False)
    print("CALLED " + json.dumps(["call"]))


if __name__ == "__main__":
    main(*sys.argv[1:])
