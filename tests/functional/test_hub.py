"""TF Hub end to end with the real TensorFlow and tensorflow_hub.

SavedModels are made with TensorFlow in the test session; a local server plays
tfhub.dev (302 chain to a signed storage URL); models load through the web front, and
from a prefetched TFHUB_CACHE_DIR inside `unshare -n`, where loopback is the only network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from hub_cache.hub_sync import HubSync
from hub_cache.models import load_model, load_models
from hub_cache.prefetch import cache_folder
from mirror.core.config import Config, parse_config
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from testkit.servers import free_port
from tests.support.archives import MALICIOUS_KINDS, malicious, tar_of_dir
from tests.support.cli import tfmirror
from tests.support.hub_upstream import HubUpstream
from tests.support.runner import runner_over
from tfmirror.app import create_app
from verify.gc import collect

TFHUB_KERAS = "https://tfhub.dev/google/tfmirror-test/keras/1"
ROOT = Path(__file__).resolve().parents[2]


def hub_config(tmp_path: Path, models: list[Any], storage: dict[str, Any] | None = None) -> Config:
    return parse_config(
        {
            "storage": storage or {"path": "store"},
            "web": {"port": free_port()},
            "hub": {"models": models, "timeout": 5, "retries": 1, "max_uncompressed_mb": 64},
        },
        tmp_path,
    )


def load_outputs(handle: str, kind: str, cache: Path, offline: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "tests.support.load_model", handle, kind]
    if offline:
        cmd = ["unshare", "-n", *cmd]
    env = {**os.environ, "TFHUB_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("OUTPUTS "))
    return json.loads(line[len("OUTPUTS ") :])


def assert_same_outputs(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_allclose(np.array(got[key]), np.array(value), rtol=1e-6)


def test_models_load_through_the_front_and_from_a_prefetched_cache_offline(
    saved_models: tuple[Path, dict[str, Any]], hub_up: HubUpstream, tmp_path: Path
) -> None:
    models_dir, expected = saved_models
    hub_up.add("google/tfmirror-test/keras/1", tar_of_dir(models_dir / "keras"))
    source = f"{hub_up.url}/google/tfmirror-test/keras/1?tf-hub-format=compressed"
    config_path = tmp_path / "tfmirror.toml"
    port = free_port()
    config_path.write_text(
        f'[storage]\npath = "store"\n[web]\nport = {port}\n'
        f'[hub]\nmodels = [{{handle = "{TFHUB_KERAS}", source = "{source}"}}]\n'
    )

    # Sync follows tfhub.dev's redirect chain; import brings the other model from a folder.
    synced = tfmirror(config_path, "sync", "hub")
    assert synced.returncode == 0, synced.stderr
    assert "hub sync: 1 new, 0 unchanged, 0 failed" in synced.stdout
    lookup_handle = "https://tfhub.dev/google/tfmirror-test/lookup/1"
    imported = tfmirror(
        config_path, "hub", "import", str(models_dir / "lookup"), "--handle", lookup_handle
    )
    assert imported.returncode == 0, imported.stderr

    config = parse_config({"storage": {"path": "store"}, "web": {"port": port}}, tmp_path)
    store = open_store(config.storage)
    keras = load_model(store, "google/tfmirror-test/keras/1")
    assert keras is not None and keras.source.startswith(f"{hub_up.url}/storage/")
    assert keras.archive["root_file"] == "saved_model.pb"
    lookup = load_model(store, "google/tfmirror-test/lookup/1")
    assert lookup is not None and lookup.archive["files"] >= 6  # 3 shards, index, asset, pb

    front = f"http://127.0.0.1:{port}"
    with WebServer(create_app(config, store), "127.0.0.1", port):
        # 1. A handle that points at the mirror, loaded by the real tensorflow_hub.
        got = load_outputs(f"{front}/hub/google/tfmirror-test/keras/1", "keras", tmp_path / "c1")
        assert_same_outputs(got, expected["keras"])
        got = load_outputs(f"{front}/hub/google/tfmirror-test/lookup/1", "lookup", tmp_path / "c1")
        assert_same_outputs(got, expected["lookup"])

        # 2. The unchanged tfhub.dev handle, from a prefetched cache, with no network.
        cache = tmp_path / "tfhub-cache"
        first = tfmirror(
            config_path,
            "hub",
            "prefetch",
            TFHUB_KERAS,
            lookup_handle,
            "--cache-dir",
            str(cache),
            "--mirror",
            front,
        )
        assert first.returncode == 0, first.stderr
        assert first.stdout.count(": fetched ->") == 2
        again = tfmirror(
            config_path,
            "hub",
            "prefetch",
            TFHUB_KERAS,
            "--cache-dir",
            str(cache),
            "--mirror",
            front,
        )
        assert ": unchanged ->" in again.stdout
    folder = cache_folder(cache, TFHUB_KERAS)
    assert (folder / "saved_model.pb").is_file()
    assert keras.sha256 in Path(f"{folder}.descriptor.txt").read_text()
    assert not list(cache.glob("*.tmp")) and not list(cache.glob(".tfmirror-*"))
    # The front is down and the namespace has no network: only the cache can answer.
    assert_same_outputs(load_outputs(TFHUB_KERAS, "keras", cache, offline=True), expected["keras"])
    got = load_outputs(lookup_handle, "lookup", cache, offline=True)
    assert_same_outputs(got, expected["lookup"])


def test_unchanged_upstream_publishes_nothing_and_flaky_is_retried(
    hub_up: HubUpstream, tmp_path: Path
) -> None:
    from tests.support.archives import FAKE_MODEL, tar_bytes

    handle = hub_up.add("google/flaky/1", tar_bytes(FAKE_MODEL), "flaky")
    config = hub_config(tmp_path, [handle])
    store = open_store(config.storage)
    first = HubSync(config, store).run()
    assert [o.status for o in first.outcomes] == ["new"]
    assert hub_up.hits["google/flaky/1"] == 2
    manifest = store.get("manifests/hub/google/flaky/1.json")

    again = HubSync(config, store).run()

    assert [o.status for o in again.outcomes] == ["unchanged"]
    assert store.get("manifests/hub/google/flaky/1.json") == manifest
    assert len(list(store.iter_blobs())) == 1


def test_every_bad_archive_is_rejected_with_its_reason_and_the_old_model_stays(
    hub_up: HubUpstream, tmp_path: Path
) -> None:
    from tests.support.archives import FAKE_MODEL, tar_bytes

    handles = {kind: hub_up.add(f"evil/{kind}/1", malicious(kind)) for kind in MALICIOUS_KINDS}
    good = hub_up.add("google/good/1", tar_bytes(FAKE_MODEL))
    config = hub_config(tmp_path, [*handles.values(), good])
    store = open_store(config.storage)
    assert HubSync(config, store).run().count("new") == 1
    good_manifest = load_model(store, "google/good/1")
    # Now the good model's upstream lies: its body stops at a tar member boundary.
    from tests.support.archives import cut_at_member_boundary

    hub_up.add("google/good/1", cut_at_member_boundary(tar_bytes(FAKE_MODEL, compress=False)))

    report = HubSync(config, store).run()

    assert not report.ok
    assert report.count("failed") == len(MALICIOUS_KINDS) + 1
    assert [m.path for m in load_models(store)] == ["google/good/1"]
    assert load_model(store, "google/good/1") == good_manifest
    # The rejected archives are served by nothing and listed by nothing: gc's to remove.
    collect(store, grace_seconds=0, keeping_out=runner_over(store).keeping_out)
    assert list(store.iter_blobs()) == [good_manifest.sha256]  # type: ignore[union-attr]
    record = json.loads(store.get("runs/hub/latest.json") or b"{}")
    reasons = {e["name"]: e["reason"] for e in record["errors"]}
    for kind, handle in handles.items():
        assert MALICIOUS_KINDS[kind] in reasons[handle], (kind, reasons[handle])
    assert "end-of-archive marker" in reasons[good]
    assert record["outcome"] == "failed"


def test_hub_on_s3_streams_byte_identical(
    hub_up: HubUpstream, tmp_path: Path, moto: Any, s3_bucket: str
) -> None:
    from tests.support.archives import FAKE_MODEL, tar_bytes

    data = tar_bytes({**FAKE_MODEL, "variables/big": os.urandom(3 << 20)})
    handle = hub_up.add("google/s3model/2", data)
    config = hub_config(
        tmp_path, [handle], {"backend": "s3", "bucket": s3_bucket, "endpoint_url": moto.url}
    )
    store = open_store(config.storage)
    assert HubSync(config, store).run().ok
    with WebServer(create_app(config, store), "127.0.0.1", config.web.port):
        url = f"{config.web.base_url}/hub/google/s3model/2?tf-hub-format=compressed"
        answer = requests.get(url, timeout=30)
        part = requests.get(url, headers={"Range": "bytes=100-1123"}, timeout=30)
        head = requests.head(url, timeout=30)
    assert answer.status_code == 200 and answer.content == data
    assert answer.headers["Content-Length"] == str(len(data))
    assert part.status_code == 206 and part.content == data[100:1124]
    assert part.headers["Content-Range"] == f"bytes 100-1123/{len(data)}"
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_unshare_really_has_no_network(hub_up: HubUpstream) -> None:
    """The offline proof above is only as good as this: loopback-only, no route out."""
    probe = (
        "import urllib.request, sys\n"
        f"try: urllib.request.urlopen('{hub_up.url}/', timeout=3)\n"
        "except Exception as e: print('unreachable', type(e).__name__); sys.exit(0)\n"
        "sys.exit(1)"
    )
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", probe], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "unreachable" in proc.stdout, proc.stderr


def test_a_hub_only_mirror_syncs_the_hub_alone(hub_up: HubUpstream, tmp_path: Path) -> None:
    from sync_jobs.scheduler import scheduled_jobs
    from tests.support.archives import FAKE_MODEL, tar_bytes

    handle = hub_up.add("google/only/1", tar_bytes(FAKE_MODEL))
    config_path = tmp_path / "tfmirror.toml"
    # No [pypi] at all, and a PyPI that cannot be reached: nothing may ask it.
    config_path.write_text(
        f'[storage]\npath = "store"\n[hub]\nmodels = ["{handle}"]\ntimeout = 5\n[proxy]\n'
        'enabled = false\n[devpi]\nserverdir = ""\nurl = "http://127.0.0.1:9"\n'
    )
    synced = tfmirror(config_path, "sync", "all")
    assert synced.returncode == 0, synced.stderr
    assert "pypi: no [pypi] requirements (a hub-only mirror); nothing to sync" in synced.stdout
    assert "hub sync: 1 new" in synced.stdout
    store = open_store(hub_config(tmp_path, [handle]).storage)
    assert [m.path for m in load_models(store)] == ["google/only/1"]
    hub_only = parse_config({"hub": {"models": [handle]}}, tmp_path)
    both = parse_config({"hub": {"models": [handle]}, "pypi": {}}, tmp_path)
    assert "pypi" not in dict(scheduled_jobs(hub_only))
    assert "pypi" in dict(scheduled_jobs(both))  # a [pypi] table: TensorFlow by default
