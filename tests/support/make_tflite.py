"""Makes real `.tflite` models with TensorFlow's converter, and records what TensorFlow's
own LiteRT interpreter says of each.

Run as a script (TensorFlow stays out of the pytest process):
    python -m tests.support.make_tflite OUT_DIR [--big] [--oob]
writes OUT_DIR/builtin.tflite (builtin ops only), OUT_DIR/flex.tflite (a Select TF op),
OUT_DIR/offset.tflite (builtin's largest buffer after the FlatBuffer, the >2 GB layout),
with --big OUT_DIR/big.tflite (a ~100 MB constant), with --oob OUT_DIR/oob.tflite (builtin
ops only, but its GATHER reads past its table on zeros: it loads and fails when invoked),
and OUT_DIR/interpreter.json: per
model, the schema version, the op names of every node, the input and output details.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BIG_SIDE = 5000  # a BIG_SIDE x BIG_SIDE float32 constant: 100 MB


def convert(tf: Any, fn: Any, spec: Any, select_tf_ops: bool = False) -> bytes:
    class Module(tf.Module):  # type: ignore[misc,name-defined]
        @tf.function(input_signature=[spec])  # type: ignore[misc]
        def __call__(self, x: Any) -> Any:
            return fn(x)

    module = Module()
    concrete = module.__call__.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    if select_tf_ops:
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS,
            tf.lite.OpsSet.SELECT_TF_OPS,
        ]
    data: bytes = converter.convert()
    return data


def with_data_after(data: bytes) -> bytes:
    """The model with its largest buffer moved after the FlatBuffer (`offset`/`size`),
    as the converter lays out models over 2 GB."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    moved = max(model.buffers, key=lambda b: 0 if b.data is None else len(b.data))
    payload = bytes(bytearray(moved.data))
    moved.data, moved.size = None, len(payload)

    def packed(offset: int) -> bytes:
        moved.offset = offset
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    start = -(-len(packed(1)) // 16) * 16  # the length does not change with the value
    head = packed(start)
    return head + bytes(start - len(head)) + payload


def described(tf: Any, path: Path) -> dict[str, Any]:
    from tensorflow.lite.python import schema_py_generated as schema

    data = path.read_bytes()
    interpreter = tf.lite.Interpreter(model_content=data)
    ops = sorted({op["op_name"] for op in interpreter._get_ops_details()})  # before delegates
    try:
        interpreter.allocate_tensors()  # every constant's buffer found, as LiteRT finds it
        allocates = ""
    except RuntimeError as exc:  # a Flex op: this pip TensorFlow links no Flex delegate
        allocates = str(exc)

    def details(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {"name": d["name"], "shape": d["shape"].tolist(), "dtype": d["dtype"].__name__}
            for d in found
        ]

    return {
        "schema_version": schema.Model.GetRootAs(data, 0).Version(),
        "ops": ops,
        "inputs": details(interpreter.get_input_details()),
        "outputs": details(interpreter.get_output_details()),
        "allocate_error": allocates,
    }


def main(out: Path, big: bool, oob: bool = False) -> None:
    import tensorflow as tf

    def small_net(x: Any) -> Any:
        y = tf.nn.relu(tf.nn.conv2d(x, tf.ones([3, 3, 3, 4]), 1, "SAME"))
        y = tf.reduce_mean(y, axis=[1, 2])
        return tf.nn.softmax(tf.matmul(y, tf.ones([4, 3])))

    models = {
        "builtin": convert(tf, small_net, tf.TensorSpec([1, 8, 8, 3], tf.float32, name="image")),
        # MatrixInverse has no builtin: the converter keeps it as the Select TF op
        # FlexMatrixInverse (tf.signal.rfft would be lowered to the builtin RFFT2D).
        "flex": convert(tf, tf.linalg.inv, tf.TensorSpec([3, 3], tf.float32), True),
    }
    models["offset"] = with_data_after(models["builtin"])
    if big:
        weights = tf.random.stateless_uniform([BIG_SIDE, BIG_SIDE], seed=[1, 2])
        models["big"] = convert(
            tf, lambda x: tf.matmul(x, weights), tf.TensorSpec([1, BIG_SIDE], tf.float32)
        )
    if oob:
        table = tf.constant([1.0, 2.0, 3.0])
        models["oob"] = convert(
            tf,
            lambda x: tf.gather(table, tf.cast(x, tf.int32) + 7),
            tf.TensorSpec([1, 4], tf.float32, name="x"),
        )
    facts = {}
    for name, data in models.items():
        path = out / f"{name}.tflite"
        path.write_bytes(data)
        facts[name] = described(tf, path)
    (out / "interpreter.json").write_text(json.dumps(facts, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), "--big" in sys.argv[2:], "--oob" in sys.argv[2:])
