"""Makes a SavedModel that uses a tensorflow-text op (RegexSplitWithOffsets): TF Serving
without tensorflow-text dies loading it with "Op type not registered".

    PYTHON -m tests.support.make_text_model OUT_DIR
Run by a Python that has tensorflow and tensorflow-text (an environment's runtime).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(out: str) -> None:
    import tensorflow as tf
    import tensorflow_text as tf_text

    class Split(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
            tokens = tf_text.regex_split(text, r"\s")
            return {"tokens": tokens.to_tensor(default_value="")}

    module = Split()
    tf.saved_model.save(module, out, signatures={"serving_default": module.__call__})
    print(tf.saved_model.load(out).signatures["serving_default"](tf.constant(["a b"])))


if __name__ == "__main__":
    main(sys.argv[1])
