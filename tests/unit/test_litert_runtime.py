"""LiteRT as a runtime: the op-listing script, run in a Python that has ai-edge-litert
(the runtime venv's situation: none of tfmirror there), names the builtins its
interpreter registers and says Flex ops are not available; the template models it
patches are models this mirror's own reader accepts."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import io

import pytest

from hub_cache.formats.litert_runtime import CUSTOM_OP_MODEL, LITERT, OPERATOR_CODE_MODEL
from hub_cache.formats.tflite_reader import read_tflite
from tests.support.runtime_listing import listing


def template(hex_text: str) -> bytes:
    return bytes.fromhex("".join(hex_text.split()))


def test_the_templates_are_tflite_models() -> None:
    declared = template(OPERATOR_CODE_MODEL)
    model = read_tflite(io.BytesIO(declared), len(declared))
    assert model.builtin_ops == {f"BUILTIN_{0x0BADC0DE}"} and model.subgraphs == 1
    custom = template(CUSTOM_OP_MODEL)
    assert read_tflite(io.BytesIO(custom), len(custom)).custom_ops == {"Q" * 64}


@pytest.mark.skipif(
    importlib.util.find_spec("ai_edge_litert") is None, reason="ai-edge-litert is not installed"
)
def test_list_ops_names_what_the_interpreter_registers() -> None:
    assert LITERT.name == "ai-edge-litert"
    # TensorFlow's tf.lite runs .tflite models too, after what a device installs
    assert LITERT.packages[:3] == ("ai-edge-litert", "tflite-runtime", "tensorflow")
    # In isolation: the script must not need tfmirror (a runtime venv has none of it)
    found = listing(LITERT, timeout=120)
    assert found["name"] == "ai-edge-litert"
    assert found["version"] == importlib.metadata.version("ai-edge-litert")
    ops = set(found["ops"])
    assert {"CONV_2D", "FULLY_CONNECTED", "MEAN", "SOFTMAX", "ADD", "WHILE"} <= ops
    assert "CUSTOM" not in ops and "CALL" not in ops  # CALL has no kernel in LiteRT
    assert found["op_versions"]["FULLY_CONNECTED"] >= 9 and set(found["op_versions"]) == ops
    assert found["custom_ops"] is None and found["custom_ops_reason"]
    assert found["flex"] == {
        "available": False,
        "reason": "Select TensorFlow op(s), included in the given model, is(are) not "
        "supported by this interpreter",
    }
