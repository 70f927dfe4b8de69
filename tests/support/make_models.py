"""Makes real SavedModels with TensorFlow, and records their outputs on a fixed input.

Run as a script (TensorFlow stays out of the pytest process):
    python -m tests.support.make_models OUT_DIR
writes OUT_DIR/keras (a Keras model exported with a serving signature), OUT_DIR/lookup
(a tf.Module with an asset file and variables in several shards) and OUT_DIR/expected.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

KERAS_INPUT = [[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0]]
WORDS = ["tensor", "flow", "mirror", "unknown-word"]


def main(out: Path) -> None:
    import numpy as np
    import tensorflow as tf

    keras = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(4,)),
            tf.keras.layers.Dense(8, activation="relu"),
            tf.keras.layers.Dense(3),
        ]
    )
    keras.export(str(out / "keras"), format="tf_saved_model", verbose=False)
    restored = tf.saved_model.load(str(out / "keras"))
    keras_out = restored.signatures["serving_default"](tf.constant(KERAS_INPUT, tf.float32))

    vocab = out / "vocab.txt"
    vocab.write_text("\n".join(["tensor", "flow", "mirror", "hub"]) + "\n")

    class Lookup(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            init = tf.lookup.TextFileInitializer(
                str(vocab),
                tf.string,
                tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER,
            )
            self.table = tf.lookup.StaticHashTable(init, default_value=-1)
            rng = np.random.default_rng(7)
            self.w1 = tf.Variable(rng.normal(size=(4, 256)).astype("float32"))
            self.w2 = tf.Variable(rng.normal(size=(256, 256)).astype("float32"))
            self.w3 = tf.Variable(rng.normal(size=(256, 2)).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, words: tf.Tensor) -> dict[str, tf.Tensor]:
            ids = self.table.lookup(words)
            hidden = tf.gather(self.w1, tf.maximum(ids, 0)) @ self.w2
            return {"ids": ids, "scores": hidden @ self.w3}

    module = Lookup()
    options = tf.saved_model.SaveOptions(
        experimental_sharding_callback=tf.train.experimental.MaxShardSizePolicy(
            max_shard_size=100_000
        )
    )
    tf.saved_model.save(
        module,
        str(out / "lookup"),
        signatures={"serving_default": module.__call__},
        options=options,
    )
    vocab.unlink()  # the SavedModel carries its own copy in assets/
    lookup = tf.saved_model.load(str(out / "lookup"))
    lookup_out = lookup.signatures["serving_default"](tf.constant(WORDS))
    expected = {
        "keras": {k: v.numpy().tolist() for k, v in keras_out.items()},
        "lookup": {k: v.numpy().tolist() for k, v in lookup_out.items()},
    }
    (out / "expected.json").write_text(json.dumps(expected))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
