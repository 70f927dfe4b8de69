"""The hub sync against an upstream that redirects inward, sends too much, or is named
with credentials: each refused with its reason, nothing published, no secret shown."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub_cache.hub_sync import HubSync
from hub_cache.models import load_models
from mirror.core.config import parse_config
from mirror.core.storage import open_store
from tests.support.archives import FAKE_MODEL, tar_bytes
from tests.support.hub_upstream import HubUpstream
from tfmirror.app import create_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def storage_host() -> Iterator[HubUpstream]:
    """A second server, on 127.0.0.2: an internal host the config does not name."""
    with HubUpstream("127.0.0.2") as up:
        yield up


def config_for(tmp_path: Path, models: list[Any], **hub: Any) -> Any:
    return parse_config(
        {
            "storage": {"path": "store"},
            "hub": {"models": models, "timeout": 5, "retries": 0, **hub},
        },
        tmp_path,
    )


def test_a_redirect_to_an_unnamed_internal_host_is_refused_until_allowed(
    hub_up: HubUpstream, storage_host: HubUpstream, tmp_path: Path
) -> None:
    handle = hub_up.add("google/inward/1", b"")
    storage_host.add("google/inward/1", tar_bytes(FAKE_MODEL))
    hub_up.storage_base = storage_host.url
    store = open_store(config_for(tmp_path, [handle]).storage)

    refused = HubSync(config_for(tmp_path, [handle]), store).run()

    assert refused.count("failed") == 1
    reason = refused.outcomes[0].reason
    assert "127.0.0.2 is a loopback address" in reason and "[hub] allow_hosts" in reason
    assert storage_host.hits["google/inward/1"] == 0  # refused before connecting
    assert load_models(store) == [] and list(store.iter_blobs()) == []

    allowed = HubSync(config_for(tmp_path, [handle], allow_hosts=["127.0.0.2"]), store).run()
    assert allowed.count("new") == 1


def test_a_model_larger_than_its_cap_is_not_stored(hub_up: HubUpstream, tmp_path: Path) -> None:
    big = tar_bytes({"saved_model.pb": b"g", "variables/v": random.Random(7).randbytes(3 << 20)})
    assert len(big) > 2**20
    handle = hub_up.add("google/big/1", big)
    config = config_for(tmp_path, [{"handle": handle, "max_mb": 1}])
    store = open_store(config.storage)
    report = HubSync(config, store).run()
    assert report.count("failed") == 1
    assert f"declares {len(big)} bytes, over the 1 MiB cap (max_mb)" in report.outcomes[0].reason
    assert list(store.iter_blobs()) == []


def test_credentials_in_a_source_are_used_and_never_shown(
    hub_up: HubUpstream, tmp_path: Path
) -> None:
    good = hub_up.add("google/good/1", tar_bytes(FAKE_MODEL))
    bad = hub_up.add("google/bad/1", b"not an archive")
    secret_base = hub_up.url.replace("http://", "http://mirror:s3cret@")
    key = "api_key=k3y-s3cret"  # a token in the query, as some model stores take one
    models = [
        {"handle": good, "source": f"{secret_base}/google/good/1?tf-hub-format=compressed&{key}"},
        {"handle": bad, "source": f"{secret_base}/google/bad/1?{key}&tf-hub-format=compressed"},
        {"handle": "https://tfhub.dev/x/missing/1", "source": f"{secret_base}/nothing-here"},
    ]
    config = config_for(tmp_path, models)
    config_path = tmp_path / "tfmirror.toml"
    config_path.write_text(
        '[storage]\npath = "store"\n[hub]\ntimeout = 5\nretries = 0\n'
        + "".join(
            f'[[hub.models]]\nhandle = "{m["handle"]}"\nsource = "{m["source"]}"\n' for m in models
        )
    )
    cli = subprocess.run(
        [sys.executable, "-m", "tfmirror.cli", "--config", str(config_path), "sync", "hub"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert cli.returncode == 1, cli.stderr
    assert "FAILED" in cli.stderr and "s3cret" not in cli.stdout + cli.stderr

    store = open_store(config.storage)
    client = create_app(config, store).test_client()
    shown = [
        client.get("/").get_data(as_text=True),
        client.get("/api/status").get_data(as_text=True),
        client.get("/metrics").get_data(as_text=True),
        client.get("/hub/google/good/1", headers={"Accept": "application/json"}).get_data(
            as_text=True
        ),
    ]
    shown += [(store.get(k) or b"").decode() for k in store.list("runs")]
    shown += [(store.get(k) or b"").decode() for k in store.list("manifests")]
    assert json.loads(shown[3])["source"].startswith(hub_up.url)
    assert "bad/1" in shown[1] and "127.0.0.1" in shown[1]
    assert not [text[:200] for text in shown if "s3cret" in text]
    # The storage redirect's signature (X-Goog-Signature=abc123) is a credential too.
    assert "X-Goog-Signature=REDACTED" in json.loads(shown[3])["source"]
    assert not [text[:200] for text in shown if "abc123" in text]
