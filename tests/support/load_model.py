"""Loads a model with the real tensorflow_hub and prints its outputs on the fixed input.

    python -m tests.support.load_model HANDLE keras|lookup
Runs in its own process: TFHUB_CACHE_DIR and the network namespace are the caller's.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(handle: str, kind: str) -> None:
    import tensorflow as tf
    import tensorflow_hub as hub

    from tests.support.make_models import KERAS_INPUT, WORDS

    model = hub.load(handle)
    serve = model.signatures["serving_default"]
    if kind == "keras":
        out = serve(tf.constant(KERAS_INPUT, tf.float32))
    else:
        out = serve(tf.constant(WORDS))
    print("OUTPUTS " + json.dumps({k: v.numpy().tolist() for k, v in out.items()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
