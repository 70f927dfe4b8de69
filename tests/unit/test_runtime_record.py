"""A runtime recorded by the release before runtime kinds (`"tensorflow": "2.21.0"`, no
name) reads as a TensorFlow runtime of that version: it is not rebuilt, and the
matrix names it as before."""

from __future__ import annotations

import json
from pathlib import Path

from verify.runtimes import RUNTIME, Runtime


def test_a_runtime_recorded_before_kinds_reads_as_tensorflow(tmp_path: Path) -> None:
    old = {
        "environment": "serving",
        "target": "py311-manylinux_2_28_x86_64",
        "closure": "ab" * 32,
        "tensorflow": "2.21.0",
        "ops": ["AddV2", "MatMul"],
        "providers": {},
        "failed": {},
        "libraries": {},
    }
    (tmp_path / RUNTIME).write_text(json.dumps(old))
    runtime = Runtime.read(tmp_path / RUNTIME)
    assert runtime.label == "TensorFlow 2.21.0" and runtime.folder == tmp_path
    assert runtime.ops == {"AddV2", "MatMul"} and runtime.extra == {}
    again = Runtime.read(_written(tmp_path, runtime))
    assert again == runtime


def _written(folder: Path, runtime: Runtime) -> Path:
    path = folder / "again.json"
    path.write_text(json.dumps(runtime.to_json()))
    return path
