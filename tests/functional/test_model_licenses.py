"""Model licences from a local Kaggle look-alike whose model instance metadata names
Apache 2.0, CC BY-NC-SA 4.0, or no licence, synced by the real `tfmirror` command.
Without a policy every model is published with its licence recorded; under
`allowed_licenses = ["Apache-2.0", "CC-BY-4.0"]` the non-commercial model's new version is
refused before a byte of it is downloaded (the version before stays served, the journal
and `history --model` name its licence), the one with no licence is refused as unknown
until `allow_unknown_license = true`, and Apache's shows on its page, /hub/, the status
page, /api/status, `hub check` and /metrics, and rides into a snapshot."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub_cache.models import load_model
from mirror.core.config import load_config
from mirror.core.snapshots import FrozenDocuments, load_snapshot
from mirror.core.storage import open_store
from testkit.servers import free_port
from tests.support.archives import FAKE_MODEL, tar_bytes
from tests.support.cli import tfmirror
from tests.support.hub_upstream import KaggleUpstream
from tfmirror.app import create_app

APACHE = "tfmirror/apache/tensorFlow2/default/1"
NC = "tfmirror/nc/tensorFlow2/default/1"
NONE = "tfmirror/none/tensorFlow2/default/1"


def kaggle_handle(kagglehub: str) -> str:
    return f"https://www.kaggle.com/models/{kagglehub}"


def served_path(kagglehub: str) -> str:
    owner, model, framework, variation, version = kagglehub.split("/")
    return f"models/{owner}/{model}/{framework.lower()}/{variation}/{version}"


def model_bytes(tag: bytes) -> bytes:
    return tar_bytes({**FAKE_MODEL, "assets/tag.txt": tag})


@pytest.fixture
def kaggle() -> Iterator[KaggleUpstream]:
    with KaggleUpstream() as up:
        up.add(APACHE, model_bytes(b"apache"))
        up.license(APACHE, "Apache 2.0")
        up.add(NC, model_bytes(b"nc v1"))
        up.license(NC, "CC BY-NC-SA 4.0")
        up.add(NONE, model_bytes(b"none"))
        up.license(NONE, None)
        yield up


def write_config(tmp_path: Path, api: str, models: list[str], hub_extra: str = "") -> Path:
    path = tmp_path / "tfmirror.toml"
    listed = ", ".join(f'"{kaggle_handle(m)}"' for m in models)
    path.write_text(
        f'[storage]\npath = "store"\n[web]\nport = {free_port()}\n'
        f'[hub]\ntimeout = 5\nretries = 1\nkaggle_api = "{api}"\n{hub_extra}models = [{listed}]\n'
    )
    return path


POLICY = 'allowed_licenses = ["Apache-2.0", "CC-BY-4.0"]\n'


def test_a_licence_policy_refuses_before_downloading_and_every_page_shows_licences(
    kaggle: KaggleUpstream, tmp_path: Path
) -> None:
    # No policy: published, each with its licence as Kaggle names it.
    config = write_config(tmp_path, kaggle.api, [APACHE, NC])
    first = tfmirror(config, "sync", "hub")
    assert first.returncode == 0, first.stderr
    store = open_store(load_config(config).storage)
    nc_v1 = load_model(store, served_path(NC))
    assert nc_v1 is not None
    assert nc_v1.license == {"name": "CC BY-NC-SA 4.0", "spdx": "CC-BY-NC-SA-4.0", "from": "kaggle"}

    # Kaggle now serves another archive of the non-commercial model; the policy allows
    # Apache and CC BY only, and the model with no licence joins.
    kaggle.add(NC, model_bytes(b"nc v2"))
    downloads = kaggle.hits[served_path(NC).removeprefix("models/")]
    config = write_config(tmp_path, kaggle.api, [APACHE, NC, NONE], POLICY)
    refused = tfmirror(config, "sync", "hub")
    assert refused.returncode == 1
    assert "its licence CC-BY-NC-SA-4.0 is not in allowed_licenses" in refused.stderr
    assert (
        "its licence is unknown (Kaggle's metadata names no licence) and "
        "allow_unknown_license is false" in refused.stderr
    )
    # Neither was downloaded; the version before stays served, the unknown one is not.
    assert kaggle.hits[served_path(NC).removeprefix("models/")] == downloads
    assert kaggle.hits[served_path(NONE).removeprefix("models/")] == 0
    still = load_model(store, served_path(NC))
    assert still is not None and still.sha256 == nc_v1.sha256
    assert load_model(store, served_path(NONE)) is None

    # The journal and `history --model` name the refusal and the licence.
    history = tfmirror(config, "history", "--model", kaggle_handle(NC), "--limit", "1")
    assert history.returncode == 0, history.stderr
    assert "model refused" in history.stdout
    assert "CC-BY-NC-SA-4.0 is not in allowed_licenses" in history.stdout
    published = tfmirror(config, "history", "--model", kaggle_handle(APACHE))
    assert "licence Apache-2.0" in published.stdout

    # Apache's licence, everywhere a model is shown.
    client = create_app(load_config(config), store).test_client()
    page = client.get(f"/hub/{served_path(APACHE)}").get_data(as_text=True)
    assert "Apache-2.0 (Apache 2.0), from kaggle" in page
    listing = client.get("/hub/").get_data(as_text=True)
    assert "<td>Apache-2.0</td>" in listing and "<td>CC-BY-NC-SA-4.0</td>" in listing
    as_json = client.get(f"/hub/{served_path(APACHE)}", headers={"Accept": "application/json"})
    assert as_json.get_json()["license"]["spdx"] == "Apache-2.0"
    status = client.get("/api/status").get_json()
    licences = {m["path"]: m["license"] for m in status["inventory"]["models"]}
    assert licences == {served_path(APACHE): "Apache-2.0", served_path(NC): "CC-BY-NC-SA-4.0"}
    assert "<td>Apache-2.0</td>" in client.get("/").get_data(as_text=True)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'tfmirror_models_by_license{license="Apache-2.0"} 1.0' in metrics
    checked = tfmirror(config, "hub", "check")
    assert checked.returncode == 0, checked.stderr
    (line,) = [row for row in checked.stdout.splitlines() if APACHE.split("/")[1] in row]
    assert line.endswith("\tlicence Apache-2.0")
    rows = json.loads(tfmirror(config, "hub", "check", "--json").stdout)
    assert {r["model"]: r["license"]["spdx"] for r in rows}[kaggle_handle(NC)] == (
        "CC-BY-NC-SA-4.0"
    )

    # Unknown is its own decision: allowed, the model with no licence is published.
    config = write_config(
        tmp_path, kaggle.api, [APACHE, NONE], POLICY + "allow_unknown_license = true\n"
    )
    allowed = tfmirror(config, "sync", "hub")
    assert allowed.returncode == 0, allowed.stderr
    unknown = load_model(store, served_path(NONE))
    assert unknown is not None and unknown.license["from"] == "unknown"
    page = create_app(load_config(config), store).test_client().get(f"/hub/{served_path(NONE)}")
    assert "unknown: Kaggle&#39;s metadata names no licence" in page.get_data(as_text=True)

    # A snapshot carries the manifests, so the licence rides along.
    assert tfmirror(config, "snapshot", "create", "licensed").returncode == 0
    snapshot = load_snapshot(store, "licensed")
    assert snapshot is not None
    kept = load_model(FrozenDocuments(snapshot), served_path(APACHE))
    assert kept is not None and kept.license["spdx"] == "Apache-2.0"


def test_metadata_that_cannot_be_read_fails_a_model_only_under_a_policy(
    kaggle: KaggleUpstream, tmp_path: Path
) -> None:
    kaggle.licenses.clear()  # Kaggle answers 404 for every instance's metadata
    config = write_config(tmp_path, kaggle.api, [APACHE])
    synced = tfmirror(config, "sync", "hub")
    assert synced.returncode == 0, synced.stderr
    store = open_store(load_config(config).storage)
    model = load_model(store, served_path(APACHE))
    assert model is not None and model.license["from"] == "unknown"
    assert "HTTP 404" in model.license["why"]

    kaggle.add(APACHE, model_bytes(b"apache v2"))
    config = write_config(tmp_path, kaggle.api, [APACHE], POLICY)
    failed = tfmirror(config, "sync", "hub")
    assert failed.returncode == 1
    assert "its licence cannot be checked against the licence policy" in failed.stderr
    assert "HTTP 404" in failed.stderr
    still = load_model(store, served_path(APACHE))
    assert still is not None and still.sha256 == model.sha256


def test_an_import_takes_its_licence_from_the_command_and_meets_the_policy(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(model_bytes(b"imported"))
    handle = "https://tfhub.dev/google/imported/1"
    config = write_config(tmp_path, "http://127.0.0.1:9/api/v1", [], POLICY)
    refused = tfmirror(config, "hub", "import", str(archive), "--handle", handle)
    assert refused.returncode == 1
    assert "its licence is unknown (none given; pass --license" in refused.stderr
    imported = tfmirror(
        config, "hub", "import", str(archive), "--handle", handle, "--license", "apache-2.0"
    )
    assert imported.returncode == 0, imported.stderr
    model = load_model(open_store(load_config(config).storage), "google/imported/1")
    assert model is not None
    assert model.license == {"name": "apache-2.0", "spdx": "Apache-2.0", "from": "config"}
