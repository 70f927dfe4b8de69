"""Kaggle Models handles: a local Kaggle look-alike (REST download, 302 to a signed
URL that expires once) serves a real SavedModel; every spelling and an old tfhub.dev
alias prefetch and load offline with the real tensorflow_hub."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from hub_cache.errors import PrefetchError
from hub_cache.hub_sync import HubSync
from hub_cache.limits import caps
from hub_cache.models import load_model
from hub_cache.prefetch import cache_folder, prefetch
from mirror.core.config import parse_config
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from testkit.servers import free_port
from tests.functional.test_hub import assert_same_outputs, load_outputs
from tests.support.archives import tar_of_dir
from tests.support.hub_upstream import KaggleUpstream
from tfmirror.app import create_app

KAGGLEHUB = "tfmirror/keras-test/tensorFlow2/default/1"
SPELLINGS = [
    "https://www.kaggle.com/models/tfmirror/keras-test/tensorFlow2/default/1",
    "https://kaggle.com/models/tfmirror/keras-test/TensorFlow2/default/1",
    "https://www.kaggle.com/models/tfmirror/keras-test/frameworks/tensorFlow2/variations/default/versions/1",
    "https://kaggle.com/models/tfmirror/keras-test/frameworks/TENSORFLOW2/variations/default/versions/1",
]
ALIAS = "https://tfhub.dev/tfmirror/keras-test/1"
CANONICAL = "models/tfmirror/keras-test/tensorflow2/default/1"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def kaggle() -> Iterator[KaggleUpstream]:
    with KaggleUpstream() as up:
        yield up


def kaggle_config(tmp_path: Path, api: str, port: int = 0) -> Any:
    return parse_config(
        {
            "storage": {"path": "store"},
            "web": {"port": port or free_port()},
            "hub": {
                "models": [{"handle": SPELLINGS[0], "aliases": [ALIAS]}],
                "kaggle_api": api,
                "timeout": 5,
                "retries": 2,
            },
        },
        tmp_path,
    )


def test_spellings_are_one_model_and_a_second_spelling_is_refused_as_a_duplicate(
    tmp_path: Path,
) -> None:
    for spelling in SPELLINGS:
        config = parse_config({"hub": {"models": [spelling]}}, tmp_path)
        assert config.hub.models[0].path == CANONICAL
    with pytest.raises(Exception, match="is the same as"):
        parse_config({"hub": {"models": SPELLINGS[:2]}}, tmp_path)


def test_kaggle_models_sync_through_an_expiring_signed_url_and_load_offline_by_any_spelling(
    saved_models: tuple[Path, dict[str, Any]],
    kaggle: KaggleUpstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    models_dir, expected = saved_models
    archive = tar_of_dir(models_dir / "keras")
    kaggle.add(KAGGLEHUB, archive)
    kaggle.expire_first = True
    monkeypatch.setenv("KAGGLE_USERNAME", "mirror-bot")
    monkeypatch.setenv("KAGGLE_KEY", "kaggle-s3cret")
    config = kaggle_config(tmp_path, kaggle.api)
    store = open_store(config.storage)

    report = HubSync(config, store).run()

    assert report.count("new") == 1, report.outcomes
    assert kaggle.signed == 2  # the expired URL was replaced by a fresh one
    assert kaggle.auth[0].startswith("Basic ")  # the API got the account, nothing shows it
    manifest = load_model(store, CANONICAL)
    assert manifest is not None and manifest.sha256 == hashlib.sha256(archive).hexdigest()
    assert "kaggle-s3cret" not in manifest.source and "mirror-bot" not in manifest.source
    alias = load_model(store, "tfmirror/keras-test/1")
    assert alias is not None and alias.sha256 == manifest.sha256 and alias.alias_of == CANONICAL

    cache = tmp_path / "tfhub-cache"
    with WebServer(create_app(config, store), "127.0.0.1", config.web.port):
        mirror = config.web.base_url
        for handle in [*SPELLINGS, ALIAS]:
            done = prefetch(handle, cache, mirror, caps(config.hub))
            assert done.folder == cache_folder(cache, handle)
        # The front answers every spelling's path too (a handle that names the mirror).
        for spelling in SPELLINGS:
            path = spelling.split("kaggle.com/", 1)[1]
            assert requests.get(f"{mirror}/hub/{path}", timeout=10).status_code == 200

    for handle in [*SPELLINGS, ALIAS]:
        got = load_outputs(handle, "keras", cache, offline=os.geteuid() == 0)
        assert_same_outputs(got, expected["keras"])


def test_kagglehub_loads_offline_from_a_prefilled_cache(
    saved_models: tuple[Path, dict[str, Any]], kaggle: KaggleUpstream, tmp_path: Path
) -> None:
    models_dir, expected = saved_models
    kaggle.add(KAGGLEHUB, tar_of_dir(models_dir / "keras"))
    config = kaggle_config(tmp_path, kaggle.api)
    store = open_store(config.storage)
    assert HubSync(config, store).run().count("new") == 1
    cache = tmp_path / "kagglehub-cache"
    url_form = SPELLINGS[2]  # the long form names the same folder kagglehub uses
    with WebServer(create_app(config, store), "127.0.0.1", config.web.port):
        mirror = config.web.base_url
        first = prefetch(KAGGLEHUB, cache, mirror, caps(config.hub), kagglehub=True)
        again = prefetch(url_form, cache, mirror, caps(config.hub), kagglehub=True)
        with pytest.raises(PrefetchError, match="not a versioned Kaggle model handle"):
            prefetch("tfmirror/keras-test", cache, mirror, caps(config.hub), kagglehub=True)
    version = cache / "models/tfmirror/keras-test/tensorFlow2/default/1"
    assert first.folder == version and (version / "saved_model.pb").is_file()
    assert (version.parent / "1.complete").is_file()
    assert again.status == "unchanged"

    cmd = [sys.executable, "-m", "tests.support.load_kagglehub", KAGGLEHUB, "keras"]
    if os.geteuid() == 0:
        cmd = ["unshare", "-n", *cmd]
    env = {**os.environ, "KAGGLEHUB_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    env.pop("KAGGLE_USERNAME", None)
    env.pop("KAGGLE_KEY", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("OUTPUTS "))
    assert_same_outputs(json.loads(line[len("OUTPUTS ") :]), expected["keras"])
