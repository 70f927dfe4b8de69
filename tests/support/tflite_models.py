"""Real .tflite models for the tests, made with TensorFlow's own converter."""

from __future__ import annotations


def tiny_tflite(scale: float = 2.0) -> bytes:
    """y = x * scale + 1 on a float32[1, 4]: builtin ops only (MUL, ADD)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
    def model(x: tf.Tensor) -> tf.Tensor:
        return x * tf.constant(scale) + tf.constant(1.0)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [model.get_concrete_function()], model
    )
    data: bytes = converter.convert()
    return data
