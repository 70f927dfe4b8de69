"""TFLite models end to end: synced from a tfhub.dev `lite-model` handle with
`?lite-format=tflite`, checked by the mirror's own reader, served at the query LiteRT
users fetch with, and run by the real `ai_edge_litert` Interpreter on the mirror's
bytes; a corrupt file is refused and the version served before stays; `hub import` of
a .tflite and `hub prefetch --to DIR`."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from hub_cache.models import load_model
from mirror.core.config import parse_config
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from testkit.servers import free_port
from tests.support.archives import tar_bytes
from tests.support.cli import tfmirror
from tests.support.hub_upstream import HubUpstream, KaggleUpstream
from tests.support.tflite_models import tiny_tflite
from tfmirror.app import create_app

PATH = "google/lite-model/tfmirror-tiny/1"

# Runs in a child process: LiteRT's interpreter beside TensorFlow's in one process is
# not what a device runs.
RUN_LITERT = """
import json, sys, urllib.request
import numpy as np
from ai_edge_litert.interpreter import Interpreter
data = urllib.request.urlopen(sys.argv[1]).read()
interpreter = Interpreter(model_content=data)
interpreter.allocate_tensors()
(inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
interpreter.set_tensor(inp["index"], np.array([[1, 2, 3, 4]], dtype=np.float32))
interpreter.invoke()
print("OUTPUT", json.dumps(interpreter.get_tensor(out["index"]).tolist()))
"""


@pytest.fixture(scope="module")
def models() -> tuple[bytes, bytes]:
    return tiny_tflite(2.0), tiny_tflite(3.0)


def litert_output(url: str) -> list[list[float]]:
    proc = subprocess.run(
        [sys.executable, "-c", RUN_LITERT, url], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("OUTPUT "))
    return json.loads(line[len("OUTPUT ") :])  # type: ignore[no-any-return]


def test_a_lite_model_syncs_serves_and_runs_in_litert_and_a_corrupt_one_keeps_the_old(
    models: tuple[bytes, bytes], hub_up: HubUpstream, tmp_path: Path
) -> None:
    first, second = models
    handle = hub_up.add(PATH, first, query="lite-format=tflite")
    port = free_port()
    config_path = tmp_path / "tfmirror.toml"
    config_path.write_text(
        f'[storage]\npath = "store"\n[web]\nport = {port}\n[hub]\nmodels = ["{handle}"]\n'
    )
    synced = tfmirror(config_path, "sync", "hub")
    assert synced.returncode == 0, synced.stderr
    assert "hub sync: 1 new, 0 unchanged, 0 failed" in synced.stdout

    config = parse_config({"storage": {"path": "store"}, "web": {"port": port}}, tmp_path)
    store = open_store(config.storage)
    manifest = load_model(store, PATH)
    assert manifest is not None
    assert manifest.sha256 == hashlib.sha256(first).hexdigest()
    assert manifest.archive["format"] == "tflite"
    assert {"MUL", "ADD"} <= set(manifest.archive["tflite"]["builtin_ops"])

    front = f"http://127.0.0.1:{port}/hub/{PATH}"
    with WebServer(create_app(config, store), "127.0.0.1", port):
        url = f"{front}?lite-format=tflite"
        got = requests.get(url, timeout=10)
        assert got.status_code == 200 and got.content == first
        assert got.headers["ETag"].strip('"') == manifest.sha256
        part = requests.get(url, headers={"Range": "bytes=4-7"}, timeout=10)
        assert part.status_code == 206 and part.content == b"TFL3"
        head = requests.head(url, timeout=10)
        assert head.headers["Content-Length"] == str(len(first))
        # tensorflow_hub's query is answered with what to ask instead.
        wrong = requests.get(f"{front}?tf-hub-format=compressed", timeout=10)
        assert wrong.status_code == 404 and "?lite-format=tflite" in wrong.json()["message"]
        page = requests.get(front, headers={"Accept": "application/json"}, timeout=10).json()
        assert "lite-format=tflite" in page["usage"]["litert"]
        html = requests.get(front, timeout=10).text
        assert 'lite-format=tflite").read())' in html and "ai_edge_litert" in html
        assert "prefetch" not in page["usage"]  # tensorflow_hub's cache takes no .tflite

        # The real LiteRT runs the mirror's bytes: 1..4 * 2 + 1.
        assert litert_output(url) == [[3.0, 5.0, 7.0, 9.0]]

        # A new version whose identifier is wrong is refused, named; the old one stays.
        corrupt = first[:4] + b"XXXX" + first[8:]
        hub_up.add(PATH, corrupt, query="lite-format=tflite")
        refused = tfmirror(config_path, "sync", "hub")
        assert refused.returncode != 0
        assert "rejected" in refused.stdout + refused.stderr
        assert "TFL3" in refused.stdout + refused.stderr
        assert requests.get(url, timeout=10).content == first

        # A good new version replaces it, and LiteRT runs it: 1..4 * 3 + 1.
        hub_up.add(PATH, second, query="lite-format=tflite")
        assert tfmirror(config_path, "sync", "hub").returncode == 0
        assert litert_output(url) == [[4.0, 7.0, 10.0, 13.0]]

        # Devices and web servers take the file plainly.
        out = tmp_path / "fleet-files"
        done = tfmirror(config_path, "hub", "prefetch", handle, "--to", str(out))
        assert done.returncode == 0, done.stderr
        written = out / (PATH.replace("/", "_") + ".tflite")
        assert written.read_bytes() == second
        into_cache = tfmirror(
            config_path, "hub", "prefetch", handle, "--cache-dir", str(tmp_path / "c")
        )
        assert into_cache.returncode != 0
        assert "does not go in a tensorflow_hub cache" in into_cache.stderr


def test_hub_import_takes_a_tflite_file_and_refuses_one_cut_short(
    models: tuple[bytes, bytes], tmp_path: Path
) -> None:
    first, _ = models
    config_path = tmp_path / "tfmirror.toml"
    config_path.write_text(f'[storage]\npath = "store"\n[web]\nport = {free_port()}\n')
    good, cut = tmp_path / "edge.tflite", tmp_path / "cut.tflite"
    good.write_bytes(first)
    cut.write_bytes(first[: len(first) // 2])
    handle = "https://tfhub.dev/google/lite-model/edge/1"
    done = tfmirror(config_path, "hub", "import", str(good), "--handle", handle)
    assert done.returncode == 0, done.stderr
    store = open_store(parse_config({"storage": {"path": "store"}}, tmp_path).storage)
    manifest = load_model(store, "google/lite-model/edge/1")
    assert manifest is not None and manifest.archive["format"] == "tflite"
    refused = tfmirror(config_path, "hub", "import", str(cut), "--handle", handle + "x")
    assert refused.returncode != 0 and "cut.tflite" not in refused.stdout
    assert "rejected" in refused.stderr


def test_a_kaggle_tflite_model_comes_archived_each_tflite_is_checked_and_litert_runs_it(
    models: tuple[bytes, bytes], tmp_path: Path
) -> None:
    first, _ = models
    handle = "https://www.kaggle.com/models/acme/edge/tfLite/default/1"
    with KaggleUpstream() as kaggle:
        kaggle.add("acme/edge/tfLite/default/1", tar_bytes({"1.tflite": first}))
        kaggle.add("acme/edge/tfLite/default/2", tar_bytes({"1.tflite": first[:4] + b"XXXX"}))
        port = free_port()
        config_path = tmp_path / "tfmirror.toml"
        models_toml = f'["{handle}", "{handle[:-1]}2"]'
        config_path.write_text(
            f'[storage]\npath = "store"\n[web]\nport = {port}\n'
            f'[hub]\nkaggle_api = "{kaggle.api}"\nmodels = {models_toml}\n'
        )
        synced = tfmirror(config_path, "sync", "hub")
    assert "1 new, 0 unchanged, 1 failed" in synced.stdout, synced.stdout + synced.stderr
    assert "1.tflite" in synced.stdout + synced.stderr  # the refused one, named
    config = parse_config({"storage": {"path": "store"}, "web": {"port": port}}, tmp_path)
    store = open_store(config.storage)
    manifest = load_model(store, "models/acme/edge/tflite/default/1")
    assert manifest is not None and manifest.archive["format"] == "tflite-archive"
    assert {"MUL", "ADD"} <= set(manifest.archive["tflite_files"]["1.tflite"]["builtin_ops"])

    # kagglehub's cache, filled from the mirror, holds the file LiteRT runs.
    cache = tmp_path / "kagglehub"
    with WebServer(create_app(config, store), "127.0.0.1", port):
        mirror = f"http://127.0.0.1:{port}"
        done = tfmirror(
            config_path, "hub", "prefetch", "acme/edge/tfLite/default/1",
            "--kagglehub-cache", str(cache), "--mirror", mirror,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (file,) = cache.rglob("1.tflite")
    assert file.read_bytes() == first
    assert litert_output(file.as_uri()) == [[3.0, 5.0, 7.0, 9.0]]
