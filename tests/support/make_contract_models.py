"""Makes the models of the contract tests with TensorFlow, and records what TensorFlow and
LiteRT say each one takes and gives, in the contract's JSON form.

    python -m tests.support.make_contract_models OUT_DIR

writes OUT_DIR/v1 (serving_default: float32[?,4] -> scores), OUT_DIR/v2 (the same and an
`embedding` output: compatible), OUT_DIR/v3 (its input uint8: breaking), OUT_DIR/v1.tflite
(v1 converted, its signature def kept), OUT_DIR/plain.tflite (no signature defs) and
OUT_DIR/expected.json: for each SavedModel, tf.saved_model.load(...).signatures' every
structured_input_signature and structured_outputs; for each .tflite, the Interpreter's
signature runners' input and output details (get_input_details where it has none).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _spec(name: str, dtype: str, shape: list[int | None] | None) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape}


def _signatures(folder: Path) -> dict[str, Any]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(folder))
    found = {}
    for name, function in loaded.signatures.items():
        _, inputs = function.structured_input_signature
        sides = {}
        for side, specs in (("inputs", inputs), ("outputs", function.structured_outputs)):
            sides[side] = [
                _spec(
                    key, spec.dtype.name, None if spec.shape.rank is None else spec.shape.as_list()
                )
                for key, spec in sorted(specs.items())
            ]
        found[name] = sides
    return found


def _litert(data: bytes) -> dict[str, Any]:
    from ai_edge_litert.interpreter import Interpreter

    def specs(details: Any) -> list[dict[str, Any]]:
        items = details.items() if isinstance(details, dict) else ((d["name"], d) for d in details)
        return [
            _spec(
                key, d["dtype"].__name__, [None if s < 0 else int(s) for s in d["shape_signature"]]
            )
            for key, d in sorted(items)
        ]

    interpreter = Interpreter(model_content=data)
    keys = interpreter.get_signature_list()
    if not keys:
        return {
            "main": {
                "inputs": specs(interpreter.get_input_details()),
                "outputs": specs(interpreter.get_output_details()),
            }
        }
    found = {}
    for key in keys:
        runner = interpreter.get_signature_runner(key)
        found[key] = {
            "inputs": specs(runner.get_input_details()),
            "outputs": specs(runner.get_output_details()),
        }
    return found


def main(out: Path) -> None:
    import tensorflow as tf

    from tests.support.tflite_models import tiny_tflite

    def save(name: str, dtype: tf.DType, embedding: bool) -> None:
        class Model(tf.Module):
            def __init__(self) -> None:
                super().__init__()
                self.w = tf.Variable(tf.ones([4, 3]))

            @tf.function(input_signature=[tf.TensorSpec([None, 4], dtype, name="x")])
            def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
                scores = tf.matmul(tf.cast(x, tf.float32), self.w)
                found = {"scores": scores}
                if embedding:
                    found["embedding"] = tf.nn.l2_normalize(scores, axis=1)
                return found

        model = Model()
        tf.saved_model.save(model, str(out / name), signatures={"serving_default": model.serve})

    save("v1", tf.float32, embedding=False)
    save("v2", tf.float32, embedding=True)
    save("v3", tf.uint8, embedding=False)
    lite = tf.lite.TFLiteConverter.from_saved_model(str(out / "v1")).convert()
    (out / "v1.tflite").write_bytes(lite)
    (out / "plain.tflite").write_bytes(tiny_tflite())
    expected = {name: _signatures(out / name) for name in ("v1", "v2", "v3")}
    for name in ("v1.tflite", "plain.tflite"):
        expected[name] = _litert((out / name).read_bytes())
    (out / "expected.json").write_text(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
