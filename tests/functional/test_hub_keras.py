"""Keras 3 files and KerasHub presets through the mirror: a real `.keras` imported,
served at `?keras-format=keras` and loaded by `keras.saving.load_model(safe_mode=True)`
from the mirror's bytes; one with a Lambda layer refused with the reason Keras's
safe_mode gives; a KerasHub preset folder imported, written plainly by `hub prefetch
--to`, and one whose config names a Lambda refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from hub_cache.models import load_model
from mirror.core.config import load_config
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from testkit.servers import free_port
from tests.support.cli import tfmirror
from tfmirror.app import create_app

PRESET = Path(__file__).resolve().parents[1] / "fixtures" / "kerashub-preset"
LOAD = """
import sys, urllib.request
import numpy as np, keras
path, _ = urllib.request.urlretrieve(sys.argv[1], sys.argv[2])
model = keras.saving.load_model(path, safe_mode=True)
print("OUTPUT", model(np.ones((1, 3), dtype="float32")).numpy().tolist())
"""


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Any]]:
    """A Dense model and one with a Lambda layer, saved by Keras 3, and the Dense one's
    output on ones."""
    import keras
    import numpy as np

    folder = tmp_path_factory.mktemp("keras")
    dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    dense.save(folder / "dense.keras")
    with_lambda = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2)])
    with_lambda.save(folder / "lambda.keras")
    expected = dense(np.ones((1, 3), dtype="float32")).numpy().tolist()
    return folder / "dense.keras", folder / "lambda.keras", expected


def test_a_keras_file_is_served_and_loads_in_keras_and_a_lambda_one_is_refused(
    keras_files: tuple[Path, Path, list[Any]], tmp_path: Path
) -> None:
    dense, with_lambda, expected = keras_files
    port = free_port()
    config_path = tmp_path / "tfmirror.toml"
    config_path.write_text(f'[storage]\npath = "store"\n[web]\nport = {port}\n')
    handle = "https://www.kaggle.com/models/acme/dense/keras/tiny/1"
    done = tfmirror(config_path, "hub", "import", str(dense), "--handle", handle)
    assert done.returncode == 0, done.stderr
    refused = tfmirror(config_path, "hub", "import", str(with_lambda), "--handle", handle + "0")
    assert refused.returncode != 0
    assert "Lambda layer" in refused.stderr and "safe_mode refuses it" in refused.stderr

    config = load_config(str(config_path))
    store = open_store(config.storage)
    manifest = load_model(store, "models/acme/dense/keras/tiny/1")
    assert manifest is not None and manifest.archive["format"] == "keras-file"
    assert "keras.layers.Dense" in " ".join(manifest.archive["keras"]["classes"])
    with WebServer(create_app(config, store), "127.0.0.1", port):
        url = f"http://127.0.0.1:{port}/hub/models/acme/dense/keras/tiny/1?keras-format=keras"
        got = requests.get(url, timeout=10)
        assert got.status_code == 200 and got.content == dense.read_bytes()
        proc = subprocess.run(
            [sys.executable, "-c", LOAD, url, str(tmp_path / "m.keras")],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        line = next(x for x in proc.stdout.splitlines() if x.startswith("OUTPUT "))
        (got,) = json.loads(line.removeprefix("OUTPUT "))
        assert got == pytest.approx(expected[0])


def test_deep_check_loads_a_keras_file_with_safe_mode_and_calls_it_once(
    keras_files: tuple[Path, Path, list[Any]], tmp_path: Path
) -> None:
    from verify.models import check_models

    dense, _, _ = keras_files
    config_path = tmp_path / "tfmirror.toml"
    config_path.write_text(f'[storage]\npath = "store"\n[web]\nport = {free_port()}\n')
    handle = "https://www.kaggle.com/models/acme/dense/keras/deep/1"
    assert tfmirror(config_path, "hub", "import", str(dense), "--handle", handle).returncode == 0
    config = load_config(str(config_path))
    store = open_store(config.storage)
    # No environment has Keras here: the probe runs in tfmirror's own Python, which has.
    (check,) = check_models(config, store, [])
    assert check.ok, check.detail
    assert check.detail == (
        "loads in tfmirror's own Python; signatures: call; "
        "the model called on zeros in tfmirror's own Python"
    )
    manifest = load_model(store, "models/acme/dense/keras/deep/1")
    assert manifest is not None
    assert manifest.signatures["call"]["outputs"]["output"]["shape"] == [None, 2]


def test_a_kerashub_preset_is_imported_and_written_plainly_and_a_lambda_one_refused(
    tmp_path: Path,
) -> None:
    preset = tmp_path / "bert_tiny_en"
    shutil.copytree(PRESET, preset)
    (preset / "model.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    port = free_port()
    config_path = tmp_path / "tfmirror.toml"
    config_path.write_text(f'[storage]\npath = "store"\n[web]\nport = {port}\n')
    handle = "https://www.kaggle.com/models/keras/bert/keras/bert_tiny_en/1"
    done = tfmirror(config_path, "hub", "import", str(preset), "--handle", handle)
    assert done.returncode == 0, done.stderr
    config = load_config(str(config_path))
    store = open_store(config.storage)
    manifest = load_model(store, "models/keras/bert/keras/bert_tiny_en/1")
    assert manifest is not None and manifest.archive["format"] == "keras"
    assert manifest.archive["keras"]["keras_hub_version"] == "0.32.0"
    with WebServer(create_app(config, store), "127.0.0.1", port):
        out = tmp_path / "models"
        mirror = f"http://127.0.0.1:{port}"
        written = tfmirror(
            config_path, "hub", "prefetch", handle, "--to", str(out), "--mirror", mirror
        )
        assert written.returncode == 0, written.stderr
        folder = out / "models_keras_bert_keras_bert_tiny_en_1"
        assert (folder / "config.json").read_bytes() == (preset / "config.json").read_bytes()

    doc = json.loads((preset / "config.json").read_text())
    doc["config"]["lambda"] = {"module": "keras.layers", "class_name": "Lambda", "config": {}}
    (preset / "config.json").write_text(json.dumps(doc))
    other = handle.removesuffix("1") + "2"
    refused = tfmirror(config_path, "hub", "import", str(preset), "--handle", other)
    assert refused.returncode != 0 and "Lambda" in refused.stderr
