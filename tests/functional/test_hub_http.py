"""HTTP done right for model archives, on the local store and on S3 alike: the answers
caches and download tools rely on (RFC 9110), errors that keep their headers, pages
that cannot be framed or sniffed, and snippets that name the configured public URL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from hub_cache.importer import import_model
from mirror.core.config import parse_config
from mirror.core.storage import open_store
from tests.support.archives import FAKE_MODEL, tar_bytes
from tfmirror.app import create_app

HANDLE = "https://tfhub.dev/google/http/1"
ARCHIVE = tar_bytes(FAKE_MODEL)
SIZE = len(ARCHIVE)
ETAG = f'"{hashlib.sha256(ARCHIVE).hexdigest()}"'
URL = "/hub/google/http/1?tf-hub-format=compressed"
PUBLIC = "http://mirror.internal:8000"


@pytest.fixture(params=["local", "s3"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FlaskClient]:
    storage: dict[str, Any] = {"path": "store"}
    if request.param == "s3":
        moto = request.getfixturevalue("moto")
        bucket = request.getfixturevalue("s3_bucket")
        storage = {"backend": "s3", "bucket": bucket, "endpoint_url": moto.url}
    config = parse_config({"storage": storage, "web": {"public_url": PUBLIC}}, tmp_path)
    store = open_store(config.storage)
    tarball = tmp_path / "model.tar.gz"
    tarball.write_bytes(ARCHIVE)
    assert import_model(store, tarball, HANDLE, config.hub).status == "new"
    yield create_app(config, store).test_client()


@pytest.mark.parametrize(
    ("headers", "status", "body", "extra"),
    [
        ({}, 200, ARCHIVE, {}),
        ({"Range": "bytes=10-19"}, 206, ARCHIVE[10:20], {"Content-Range": f"bytes 10-19/{SIZE}"}),
        ({"Range": f"bytes={SIZE}-"}, 416, b"", {"Content-Range": f"bytes */{SIZE}"}),
        ({"Range": "bytes=oops"}, 200, ARCHIVE, {}),  # malformed: ignored
        ({"Range": "bytes=0-1,5-6"}, 200, ARCHIVE, {}),  # several ranges: ignored
        ({"Range": "items=0-1"}, 200, ARCHIVE, {}),  # another unit: ignored
        ({"Range": "bytes=0-9", "If-Range": '"other"'}, 200, ARCHIVE, {}),
        ({"Range": "bytes=0-9", "If-Range": ETAG}, 206, ARCHIVE[:10], {}),
        ({"If-None-Match": ETAG}, 304, b"", {"ETag": ETAG}),
        ({"If-None-Match": '"other"'}, 200, ARCHIVE, {}),
        ({"If-Match": '"other"'}, 412, b"", {}),
        ({"If-Match": ETAG}, 200, ARCHIVE, {}),
    ],
)
def test_archive_answers(
    client: FlaskClient, headers: dict[str, str], status: int, body: bytes, extra: dict[str, str]
) -> None:
    answer = client.get(URL, headers=headers)
    assert (answer.status_code, answer.data) == (status, body)
    for name, value in extra.items():
        assert answer.headers[name] == value


def test_errors_keep_their_headers_and_impossible_paths_are_404(client: FlaskClient) -> None:
    wrong = client.post(URL)
    assert wrong.status_code == 405
    assert set(wrong.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "HEAD"}
    assert client.get("/hub/" + "a" * 300 + "/1").status_code == 404
    assert client.get("/hub/google/http/1/../../../etc/passwd").status_code == 404
    assert client.get("/hub/%00/1").status_code == 404


def test_pages_cannot_be_sniffed_or_framed(client: FlaskClient) -> None:
    for path in ("/", "/hub/", "/hub/google/http/1", URL, "/api/status", "/nope"):
        answer = client.get(path)
        assert answer.headers["X-Content-Type-Options"] == "nosniff", path
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"], path


def test_snippets_name_the_public_url_whatever_the_host_header(client: FlaskClient) -> None:
    page = client.get("/hub/google/http/1", headers={"Host": "evil.example"})
    text = page.get_data(as_text=True)
    assert f'hub.load("{PUBLIC}/hub/google/http/1")' in text
    assert "evil.example" not in text
    info = client.get(
        "/hub/google/http/1", headers={"Host": "evil.example", "Accept": "application/json"}
    ).get_json()
    assert info["mirror_handle"] == f"{PUBLIC}/hub/google/http/1"
