"""Known modules a closure's projects import without declaring them: warned with the fix."""

from __future__ import annotations

from mirror.pypi.module_gaps import fix_for_import_error, gaps


def test_tensorflow_hub_without_a_setuptools_that_has_pkg_resources_is_a_gap() -> None:
    (warning,) = gaps("serving", [("tensorflow-hub", "0.16.1"), ("setuptools", "82.0.0")])
    assert "tensorflow-hub imports pkg_resources" in warning
    assert 'add "setuptools<82" to [pypi.environments.serving] constraints' in warning
    assert "setuptools 82 no longer has" in warning
    assert gaps("serving", [("tensorflow_hub", "0.16.1")])  # no setuptools at all
    assert gaps("serving", [("tensorflow-hub", "0.16.1"), ("setuptools", "81.0.0")]) == []
    assert gaps("serving", [("six", "1.17.0")]) == []


def test_a_failed_import_of_a_known_gap_gets_its_fix() -> None:
    error = "import tensorflow_hub: ModuleNotFoundError: No module named 'pkg_resources'"
    fix = fix_for_import_error("default", error, ["tensorflow-hub"])
    assert fix is not None and 'add "setuptools<82"' in fix
    assert fix_for_import_error("default", "No module named 'yaml'", ["pyyaml"]) is None
