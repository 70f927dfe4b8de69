"""Loads a SavedModel folder with TensorFlow, prints its signatures as JSON, and calls
its serving signature on zeros of the declared shapes (a dimension left open: 1).

    python hub_cache/formats/probes/saved_model_load.py DIR [MODULE ...]
MODULEs are op libraries (tensorflow_text, ...) imported first: their ops register on
import, and a model that uses them loads only after.
Run in a subprocess, by an environment's runtime Python (verify.runtimes): a model that
crashes TensorFlow takes only the probe down. Imports nothing of tfmirror's.
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


def main(folder: str, *libraries: str) -> None:
    import importlib

    import tensorflow as tf

    for module in libraries:
        importlib.import_module(module)

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
    serve = loaded.signatures.get("serving_default")
    if serve is not None:
        _, inputs = serve.structured_input_signature
        feed = {}
        for name, spec in inputs.items():
            shape = [1 if d is None else d for d in spec.shape.as_list()]
            if spec.dtype == tf.string:
                feed[name] = tf.fill(shape, "")
            else:
                feed[name] = tf.zeros(shape, spec.dtype)
        outputs = serve(**feed)
        print("CALLED " + json.dumps(sorted(outputs)))


if __name__ == "__main__":
    main(*sys.argv[1:])
