"""The hub front through Flask's test client: the HTTP a tensorflow_hub client relies on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from hub_cache.importer import import_model
from mirror.core.config import parse_config
from mirror.core.storage import LocalStore
from tests.support.archives import FAKE_MODEL, tar_bytes
from tfmirror.app import create_app

HANDLE = "https://tfhub.dev/google/imagenet/mobilenet/5"
ARCHIVE = tar_bytes(FAKE_MODEL)
SHA = hashlib.sha256(ARCHIVE).hexdigest()
URL = "/hub/google/imagenet/mobilenet/5?tf-hub-format=compressed"


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    config = parse_config({"web": {"public_url": "http://mirror.internal"}}, tmp_path)
    store = LocalStore(tmp_path / "store")
    tarball = tmp_path / "model.tar.gz"
    tarball.write_bytes(ARCHIVE)
    assert import_model(store, tarball, HANDLE, config.hub).status == "new"
    return create_app(config, store).test_client()


def test_archive_with_length_etag_range_and_head(client: FlaskClient) -> None:
    full = client.get(URL)
    assert full.status_code == 200 and full.data == ARCHIVE
    assert full.headers["Content-Length"] == str(len(ARCHIVE))
    assert full.headers["ETag"] == f'"{SHA}"'
    part = client.get(URL, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.data == ARCHIVE[10:20]
    head = client.head(URL)
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Content-Length"] == str(len(ARCHIVE))
    assert client.get(URL, headers={"If-None-Match": f'"{SHA}"'}).status_code == 304


def test_model_page_html_and_json(client: FlaskClient) -> None:
    page = client.get("/hub/google/imagenet/mobilenet/5").get_data(as_text=True)
    assert 'hub.load("http://mirror.internal/hub/google/imagenet/mobilenet/5")' in page
    assert f"tfmirror hub prefetch {HANDLE} --cache-dir DIR" in page
    assert SHA in page
    info = client.get(
        "/hub/google/imagenet/mobilenet/5", headers={"Accept": "application/json"}
    ).get_json()
    assert info["sha256"] == SHA and info["size"] == len(ARCHIVE)
    assert info["archive"]["files"] == 3 and info["synced_at"]


def test_list_of_models(client: FlaskClient) -> None:
    listing = client.get("/hub/", headers={"Accept": "application/json"}).get_json()
    assert [m["handle"] for m in listing["models"]] == [HANDLE]
    assert HANDLE in client.get("/hub/").get_data(as_text=True)


@pytest.mark.parametrize(
    "path",
    [
        "/hub/google/unknown/1",
        "/hub/google/unknown/1?tf-hub-format=compressed",
        "/hub/../../etc/passwd",
        "/hub/%2e%2e/%2e%2e/etc/passwd?tf-hub-format=compressed",
        "/hub/google/imagenet/mobilenet/5/../../../../manifests/pypi/x",
    ],
)
def test_unknown_or_crafted_paths_are_404(client: FlaskClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404
    assert "/hub/" in answer.get_json()["message"]


def test_behind_the_proxy_nginx_sends_the_blob_and_the_front_answers_conditionals(
    client: FlaskClient,
) -> None:
    accel = {"X-Tfmirror-Accel-Blobs": "/_tfmirror/blobs/"}
    redirected = client.get(URL, headers=accel)
    assert redirected.status_code == 200 and redirected.data == b""
    assert redirected.headers["X-Accel-Redirect"] == f"/_tfmirror/blobs/{SHA[:2]}/{SHA}"
    assert redirected.headers["ETag"] == f'"{SHA}"'
    unchanged = client.get(URL, headers={**accel, "If-None-Match": f'"{SHA}"'})
    assert unchanged.status_code == 304 and "X-Accel-Redirect" not in unchanged.headers
    # A header nginx did not set (or a crafted one) never becomes a redirect.
    for value in ("", "/etc/", "../x/"):
        plain = client.get(URL, headers={"X-Tfmirror-Accel-Blobs": value})
        assert plain.data == ARCHIVE and "X-Accel-Redirect" not in plain.headers


def test_the_status_page_lists_each_model_with_its_version_and_format(
    client: FlaskClient,
) -> None:
    (row,) = client.get("/api/status").get_json()["inventory"]["models"]
    assert (row["handle"], row["version"], row["format"]) == (HANDLE, "5", "SavedModel")
    page = client.get("/").get_data(as_text=True)
    assert "<td>5</td><td>SavedModel</td>" in page
