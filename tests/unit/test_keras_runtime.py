"""Keras as a runtime: the listing script, run in a Python that has Keras (-I: a runtime
venv has none of tfmirror), names the classes a saved config can name; a model's classes
checked against that list say what is missing and why, in words."""

from __future__ import annotations

import importlib.metadata
import importlib.util

import pytest

from hub_cache.formats.base import GraphOps, Registered
from hub_cache.formats.keras_runtime import KERAS, keras_gaps
from tests.support.runtime_listing import listing

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("keras") is None, reason="keras is not installed"
)
# What Keras 3 wrote in the config of a functional Dense model (hub_cache.formats.keras_model)
FUNCTIONAL = frozenset(
    {
        "keras.DTypePolicy",
        "keras.initializers.GlorotUniform",
        "keras.initializers.Zeros",
        "keras.layers.Concatenate",
        "keras.layers.Dense",
        "keras.layers.InputLayer",
        "keras.src.models.functional.Functional",
    }
)


@pytest.fixture(scope="module")
def host_keras() -> Registered:
    found = listing(KERAS, timeout=300)
    assert found["name"] == "keras" and found["version"] == importlib.metadata.version("keras")
    label = f"keras {found['version']}"
    extra = {"keras_hub": found["keras_hub"], "backend": found["backend"]}
    return Registered(label, found["version"], frozenset(found["ops"]), found["failed"], extra)


def test_a_model_whose_classes_this_keras_has_fits(host_keras: Registered) -> None:
    gaps = keras_gaps(GraphOps(FUNCTIONAL, "3.15.1"), host_keras)
    assert gaps.missing == [] and gaps.reason == ""


def test_a_class_this_keras_lacks_and_a_kerashub_class_are_named_with_why(
    host_keras: Registered,
) -> None:
    if host_keras.extra["keras_hub"]:
        pytest.skip("keras-hub is installed here")
    backbone = "keras_hub.src.models.bert.bert_backbone.BertBackbone"
    wanted = FUNCTIONAL | {backbone, "keras.layers.FutureLayer"}
    gaps = keras_gaps(GraphOps(wanted, "9.0.0"), host_keras)
    assert gaps.missing == ["keras.layers.FutureLayer", backbone]
    assert gaps.provided_by == ["keras-hub"]
    assert gaps.reason == (
        f"needs keras-hub for BertBackbone; {host_keras.label} lacks "
        "keras.layers.FutureLayer (written by Keras 9.0.0)"
    )
