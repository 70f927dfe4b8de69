"""Model contracts: the JSON an operator pins, each rule of what breaks serving code and
what does not, a TF.js model.json's signature, and a pinned file the config refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub_cache.formats.tfjs_signature import tfjs_contract
from mirror.core.config import parse_config
from mirror.core.contract_changes import Severity, compare
from mirror.core.contracts import Contract, ContractInvalid, Signature, TensorSpec
from mirror.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
IMAGE = TensorSpec("images", "float32", (None, 224, 224, 3))
LOGITS = TensorSpec("logits", "float32", (None, 1000))


def contract(*signatures: Signature) -> Contract:
    return Contract.of(list(signatures))


def serving(inputs: list[TensorSpec], outputs: list[TensorSpec]) -> Contract:
    return contract(Signature.make("serving_default", inputs, outputs))


V1 = serving([IMAGE], [LOGITS])


def changes(new: Contract) -> list[tuple[Severity, str]]:
    return [(c.severity, c.what) for c in compare(V1, new)]


def test_the_same_contract_has_no_changes() -> None:
    assert compare(V1, serving([IMAGE], [LOGITS])) == []


def test_an_output_added_is_compatible() -> None:
    embedding = TensorSpec("embedding", "float32", (None, 128))
    assert changes(serving([IMAGE], [LOGITS, embedding])) == [
        (Severity.COMPATIBLE, "output 'embedding' (float32[?,128]) added")
    ]


def test_an_input_dtype_changed_is_breaking() -> None:
    uint8 = TensorSpec("images", "uint8", (None, 224, 224, 3))
    assert changes(serving([uint8], [LOGITS])) == [
        (Severity.BREAKING, "input 'images' dtype float32 -> uint8")
    ]


def test_an_output_removed_is_breaking() -> None:
    found = changes(serving([IMAGE], []))
    assert found == [(Severity.BREAKING, "output 'logits' (float32[?,1000]) removed")]


def test_a_rename_is_named_as_one_breaking_change() -> None:
    renamed = TensorSpec("pixels", "float32", (None, 224, 224, 3))
    assert changes(serving([renamed], [LOGITS])) == [
        (Severity.BREAKING, "input 'images' renamed 'pixels'")
    ]


def test_a_rank_change_is_breaking() -> None:
    flat = TensorSpec("images", "float32", (None, 150528))
    ((severity, what),) = changes(serving([flat], [LOGITS]))
    assert severity is Severity.BREAKING and what.startswith("input 'images' rank 4 -> 2")


def test_a_known_dimension_changed_is_breaking() -> None:
    bigger = TensorSpec("images", "float32", (None, 384, 384, 3))
    assert [s for s, _ in changes(serving([bigger], [LOGITS]))] == [Severity.BREAKING] * 2


def test_a_dimension_relaxed_to_unknown_is_compatible() -> None:
    any_size = TensorSpec("images", "float32", (None, None, None, 3))
    found = changes(serving([any_size], [LOGITS]))
    assert [s for s, _ in found] == [Severity.COMPATIBLE] * 2
    assert "dimension 1 relaxed to unknown" in found[0][1]


def test_an_open_input_dimension_fixed_is_breaking_an_output_one_is_not() -> None:
    batch_of_one = TensorSpec("images", "float32", (1, 224, 224, 3))
    one_row = TensorSpec("logits", "float32", (1, 1000))
    found = changes(serving([batch_of_one], [one_row]))
    assert [s for s, _ in found] == [Severity.BREAKING, Severity.COMPATIBLE]


def test_a_new_required_input_breaks_a_new_one_with_a_default_does_not() -> None:
    mask = TensorSpec("mask", "bool", (None,))
    assert changes(serving([IMAGE, mask], [LOGITS]))[0][0] is Severity.BREAKING
    with_default = TensorSpec("mask", "bool", (None,), optional=True)
    assert changes(serving([IMAGE, with_default], [LOGITS]))[0][0] is Severity.COMPATIBLE


def test_a_signature_removed_breaks_one_added_does_not() -> None:
    other = Signature.make("classify", [IMAGE], [LOGITS])
    both = contract(Signature.make("serving_default", [IMAGE], [LOGITS]), other)
    assert [(c.severity, c.signature) for c in compare(V1, both)] == [
        (Severity.COMPATIBLE, "classify")
    ]
    assert [(c.severity, c.what) for c in compare(both, V1)] == [
        (Severity.BREAKING, "signature removed")
    ]


def test_a_contract_round_trips_its_json() -> None:
    pinned = contract(
        Signature.make("serving_default", [IMAGE], [LOGITS]),
        Signature.make("any", [TensorSpec("x", "string", None, optional=True)], []),
    )
    assert Contract.from_bytes(pinned.to_bytes()) == pinned


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{", "not JSON"),
        ('{"signatures": []}', "no signatures object"),
        ('{"signatures": {"s": {"inputs": [{"name": "x", "dtype": "float32"}]}}}', "shape"),
        ('{"signatures": {"s": {"inputs": [{"name": "x", "shape": [1]}]}}}', "dtype"),
        ('{"signatures": {"s": {"inputs": [{"name": "x", "dtype": "f", "shape": [-1]}]}}}', "null"),
        ('{"contract_version": 9, "signatures": {}}', "contract_version 9"),
    ],
)
def test_a_document_that_is_no_contract_says_why(text: str, says: str) -> None:
    with pytest.raises(ContractInvalid, match=says):
        Contract.from_bytes(text.encode(), "pinned.json")


def test_a_tfjs_graph_model_states_its_signature_a_layers_model_none() -> None:
    graph = (ROOT / "tests/fixtures/tfjs/graph/model.json").read_bytes()
    expected = Signature.make(
        "serving_default",
        [TensorSpec("x", "float32", (None, 4))],
        [TensorSpec("output_0", "float32", (None, 3))],
    )
    assert tfjs_contract(graph) == Contract.of([expected], "model.json")
    layers = (ROOT / "tests/fixtures/tfjs/layers/model.json").read_bytes()
    assert "layers model" in str(tfjs_contract(layers))


def hub_with(tmp_path: Path, entry: dict[str, object]) -> None:
    parse_config(
        {
            "storage": {"path": "store"},
            "hub": {"models": [{"handle": "https://tfhub.dev/google/m/1", **entry}]},
        },
        tmp_path,
    )


def test_a_pinned_contract_that_is_missing_or_invalid_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"models\[0\] contract = 'contracts/m.json': .*m.json"):
        hub_with(tmp_path, {"contract": "contracts/m.json"})
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts/m.json").write_text('{"signatures": 3}')
    with pytest.raises(ConfigError, match=r"no signatures object.*--write FILE"):
        hub_with(tmp_path, {"contract": "contracts/m.json"})
    (tmp_path / "contracts/m.json").write_bytes(V1.to_bytes())
    hub_with(tmp_path, {"contract": "contracts/m.json", "on_contract_change": "block"})
    with pytest.raises(ConfigError, match=r'on_contract_change = .stop.: use "report" or "block"'):
        hub_with(tmp_path, {"contract": "contracts/m.json", "on_contract_change": "stop"})
