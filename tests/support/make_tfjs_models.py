"""Makes the TF.js models of tests/fixtures/tfjs with the real `tensorflowjs` converter.

    python -m tests.support.make_tfjs_models OUT_DIR

needs `tensorflowjs` (4.22: `pip install --no-deps tensorflowjs` beside TensorFlow and
tf_keras) and writes OUT_DIR/graph (MatMul+BiasAdd+Relu, weights in 2 shards),
OUT_DIR/graph_uint8 and OUT_DIR/graph_float16 (the same, quantized), OUT_DIR/layers (a
Keras Dense layer) and OUT_DIR/expected.json (TensorFlow's outputs on INPUT). The
converter imports jax and tensorflow_decision_forests for converters these models do not
use; neither installs beside this TensorFlow, so empty modules stand in for them.
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

INPUT = [[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]]


def main(out: Path) -> None:
    import numpy as np
    import tensorflow as tf
    import tf_keras

    for name in (
        "jax",
        "jax.experimental",
        "jax.experimental.jax2tf",
        "tensorflow_decision_forests",
    ):
        sys.modules.setdefault(name, types.ModuleType(name))
    from tensorflowjs.converters import keras_h5_conversion, tf_saved_model_conversion_v2

    rng = np.random.default_rng(7)

    class Dense(tf.Module):
        def __init__(self) -> None:
            self.kernel = tf.Variable(rng.normal(size=(4, 3)).astype("float32"))
            self.bias = tf.Variable(np.array([0.5, -0.25, 0.125], "float32"))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def __call__(self, x: tf.Tensor) -> tf.Tensor:
            return tf.nn.relu(tf.nn.bias_add(tf.matmul(x, self.kernel), self.bias))

    graph = Dense()
    saved = out / "saved_model"
    tf.saved_model.save(graph, str(saved), signatures=graph.__call__)
    convert = tf_saved_model_conversion_v2.convert_tf_saved_model
    convert(str(saved), str(out / "graph"), weight_shard_size_bytes=32)
    convert(str(saved), str(out / "graph_uint8"), quantization_dtype_map={"uint8": True})
    convert(str(saved), str(out / "graph_float16"), quantization_dtype_map={"float16": True})

    layers = tf_keras.Sequential(
        [tf_keras.Input(shape=(4,)), tf_keras.layers.Dense(3, activation="relu")]
    )
    layers.layers[0].set_weights(
        [rng.normal(size=(4, 3)).astype("float32"), np.array([0.5, -0.25, 0.125], "float32")]
    )
    keras_h5_conversion.save_keras_model(layers, str(out / "layers"))

    x = tf.constant(INPUT, tf.float32)
    expected = {
        "input": INPUT,
        "graph": graph(x).numpy().tolist(),
        "layers": layers(x).numpy().tolist(),
    }
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
