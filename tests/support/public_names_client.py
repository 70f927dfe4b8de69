"""A node's unchanged code, run where the public names lead to the mirror: prints one
`RESULT {json}` line (where the model landed and its outputs, or the error raised).

    python -m tests.support.public_names_client kagglehub|tfhub HANDLE keras|lookup|-
    python -m tests.support.public_names_client kerashub HANDLE -
(kerashub: `Backbone.from_preset("kaggle://HANDLE")` and `TextClassifier.from_preset`, run
by a Python that has keras-hub.)
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(client: str, handle: str, kind: str) -> None:
    result: dict[str, object] = {}
    try:
        if client == "kerashub":
            import keras_hub

            from tests.support.kerashub_preset import outputs as preset_outputs

            preset = "kaggle://" + handle
            backbone = keras_hub.models.Backbone.from_preset(preset)
            classifier = keras_hub.models.TextClassifier.from_preset(preset)
            result["outputs"] = preset_outputs(backbone, classifier)
            path = handle
        elif client == "kagglehub":
            import kagglehub

            result["path"] = path = kagglehub.model_download(handle)
        else:
            path = handle
        if kind != "-":
            result["outputs"] = outputs(path, kind)
    except Exception as exc:  # the client's own error is what the test reads
        response = getattr(exc, "response", None)
        result["error"] = type(exc).__name__
        result["message"] = str(exc)
        result["status"] = getattr(response, "status_code", None)
        result["body"] = getattr(response, "text", "")[:2000] if response is not None else ""
    print("RESULT " + json.dumps(result), flush=True)


def outputs(handle: str, kind: str) -> dict[str, object]:
    import tensorflow as tf
    import tensorflow_hub as hub

    from tests.support.make_models import KERAS_INPUT, WORDS

    serve = hub.load(handle).signatures["serving_default"]
    given = tf.constant(KERAS_INPUT, tf.float32) if kind == "keras" else tf.constant(WORDS)
    return {k: v.numpy().tolist() for k, v in serve(given).items()}


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
