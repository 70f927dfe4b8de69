"""Loads a SavedModel folder with TensorFlow and prints its signatures as JSON.

    python -m verify.model_probe DIR
Run in a subprocess: a model that crashes TensorFlow takes only the probe down.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _spec(spec: object) -> dict[str, object]:
    shape = getattr(spec, "shape", None)
    dtype = getattr(spec, "dtype", None)
    return {
        "dtype": getattr(dtype, "name", str(dtype)),
        "shape": None if shape is None or shape.rank is None else list(shape.as_list()),
    }


def main(folder: str) -> None:
    import tensorflow as tf

    loaded = tf.saved_model.load(folder)
    signatures = {}
    for name, function in loaded.signatures.items():
        _, inputs = function.structured_input_signature
        outputs = function.structured_outputs
        signatures[name] = {
            "inputs": {k: _spec(v) for k, v in sorted(inputs.items())},
            "outputs": {k: _spec(v) for k, v in sorted(outputs.items())},
        }
    print("SIGNATURES " + json.dumps(signatures))


if __name__ == "__main__":
    main(sys.argv[1])
