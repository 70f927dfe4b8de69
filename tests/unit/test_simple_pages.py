"""The simple pages devpi mirrors from, through Flask's test client."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from mirror.core.config import Target, parse_config
from mirror.core.storage import LocalStore
from mirror.pypi.manifest import Manifest, delete_manifest, load_all, save_manifest
from mirror.pypi.resolve import Wheel
from tfmirror.app import create_app

PEP691 = "application/vnd.pypi.simple.v1+json"
DATA = b"wheel bytes"
SHA = hashlib.sha256(DATA).hexdigest()
FILENAME = "My_Pkg-1.0-py3-none-any.whl"
META = b"Metadata-Version: 2.1\nName: my-pkg\nVersion: 1.0\nRequires-Python: >=3.9\n"
META_SHA = hashlib.sha256(META).hexdigest()


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    store = LocalStore(tmp_path / "store")
    writer = store.new_blob()
    writer.write(DATA)
    writer.publish(SHA)
    wheel = Wheel(
        "my-pkg",
        "1.0",
        FILENAME,
        "https://up/x.whl",
        SHA,
        len(DATA),
        upload_time="2024-01-02T03:04:05Z",
        requires_python=">=3.9",
        metadata_sha256=META_SHA,
        yanked="a <bad> build",
    )
    meta = store.new_blob()
    meta.write(META)
    meta.publish(META_SHA)
    save_manifest(store, Manifest(Target("3.11", "win_amd64"), ("my-pkg",), [wheel], "t"))
    # A blob that is stored but listed by no manifest must never be offered.
    stray = store.new_blob()
    stray.write(b"stray")
    stray.publish(hashlib.sha256(b"stray").hexdigest())
    return create_app(parse_config({}, tmp_path), store).test_client()


def test_project_list_json_and_html(client: FlaskClient) -> None:
    doc = client.get("/simple/", headers={"Accept": PEP691}).get_json()
    assert doc["projects"] == [{"name": "my-pkg"}]
    html = client.get("/simple/").get_data(as_text=True)
    assert 'href="my-pkg/"' in html


def test_project_page_lists_files_with_sha256(client: FlaskClient) -> None:
    answer = client.get("/simple/My.Pkg/", headers={"Accept": PEP691})
    assert answer.status_code == 200
    assert answer.content_type == PEP691
    (entry,) = answer.get_json()["files"]
    assert entry["filename"] == FILENAME
    assert entry["hashes"] == {"sha256": SHA}
    html = client.get("/simple/my-pkg/").get_data(as_text=True)
    assert f"#sha256={SHA}" in html


def test_conditional_get_answers_304(client: FlaskClient) -> None:
    first = client.get("/simple/my-pkg/", headers={"Accept": PEP691})
    again = client.get(
        "/simple/my-pkg/", headers={"Accept": PEP691, "If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304


def test_file_is_served_byte_identical_with_range(client: FlaskClient) -> None:
    answer = client.get(f"/files/{SHA}/{FILENAME}")
    assert answer.status_code == 200 and answer.data == DATA
    part = client.get(f"/files/{SHA}/{FILENAME}", headers={"Range": "bytes=0-4"})
    assert part.status_code == 206 and part.data == DATA[:5]


def test_unknown_project_and_unlisted_blob_are_404(client: FlaskClient) -> None:
    answer = client.get("/simple/nope/")
    assert answer.status_code == 404
    assert "nope is not mirrored here" in answer.get_json()["message"]
    stray = hashlib.sha256(b"stray").hexdigest()
    assert client.get(f"/files/{stray}/stray-1.0-py3-none-any.whl").status_code == 404
    assert client.get(f"/files/{SHA}/other-1.0-py3-none-any.whl").status_code == 404
    assert client.get("/files/../../etc/passwd").status_code == 404


def test_the_fleets_index_links_devpis_files_with_every_fact_installers_read(
    client: FlaskClient,
) -> None:
    page = "/tfmirror/pypi/+simple/my-pkg/"
    (entry,) = client.get(page, headers={"Accept": PEP691}).get_json()["files"]
    assert entry["url"] == f"../../+f/{SHA[:3]}/{SHA[3:16]}/{FILENAME}"
    assert entry["upload-time"] == "2024-01-02T03:04:05Z"
    assert entry["size"] == len(DATA)
    assert entry["requires-python"] == ">=3.9"
    assert entry["core-metadata"] == {"sha256": META_SHA}
    # Never PEP 658's JSON key: pip 22.3 to 23.0 crash on it (PEP 714).
    assert "dist-info-metadata" not in entry
    assert entry["yanked"] == "a <bad> build"
    html = client.get(page).get_data(as_text=True)
    assert 'data-yanked="a &lt;bad&gt; build"' in html
    assert 'data-requires-python="&gt;=3.9"' in html
    assert f'data-core-metadata="sha256={META_SHA}"' in html
    assert client.get(f"/tfmirror/pypi/+f/{SHA[:3]}/{SHA[3:16]}/{FILENAME}.metadata").data == META
    # Without nginx the front sends a file request on to devpi, which holds the bytes.
    moved = client.get(f"/tfmirror/pypi/+f/{SHA[:3]}/{SHA[3:16]}/{FILENAME}")
    assert moved.status_code == 302
    assert moved.headers["Location"] == (
        f"http://127.0.0.1:3141/tfmirror/pypi/+f/{SHA[:3]}/{SHA[3:16]}/{FILENAME}"
    )
    assert client.get("/other/index/+simple/my-pkg/").status_code == 404
    assert client.get("/tfmirror/pypi/+simple/nothing-here/").status_code == 404


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        # pip before 22.2 asks for text/html and refuses anything else.
        ("text/html", "text/html; charset=utf-8"),
        ("*/*", "application/vnd.pypi.simple.v1+html"),
        ("application/vnd.pypi.simple.latest+json", PEP691),
        ("application/vnd.pypi.simple.latest+html", "application/vnd.pypi.simple.v1+html"),
        (f"{PEP691}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01", PEP691),
    ],
)
def test_each_client_gets_the_type_it_asked_for(
    client: FlaskClient, accept: str, content_type: str
) -> None:
    for path in ("/simple/my-pkg/", "/tfmirror/pypi/+simple/my-pkg/"):
        resp = client.get(path, headers={"Accept": accept})
        assert resp.status_code == 200 and resp.content_type == content_type
        assert (FILENAME in resp.get_data(as_text=True)) and resp.headers["Vary"] == "Accept"


@pytest.mark.parametrize(
    "path",
    [
        "/tfmirror/pypi/+f/a/b/x%0d%0aSet-Cookie:%20a=b",
        "/tfmirror/pypi/+f/a%0a/b/x.whl",
        "/tfmirror/pypi/+f/a/b/x%00.whl",
        "/tfmirror/pypi/+f/a/b/x%0d%0a.metadata",
        "/tfmirror/pypi/+simple/my-pkg%0d%0a/",
    ],
)
def test_a_crafted_file_path_is_a_404_never_a_500_or_a_header(
    client: FlaskClient, path: str
) -> None:
    answer = client.get(path)
    assert answer.status_code == 404
    assert "Set-Cookie" not in answer.headers


def test_a_file_name_with_odd_characters_is_sent_on_to_devpi_quoted(client: FlaskClient) -> None:
    moved = client.get("/tfmirror/pypi/+f/a/b/x%20y%23z.whl")
    assert moved.status_code == 302
    assert moved.headers["Location"] == "http://127.0.0.1:3141/tfmirror/pypi/+f/a/b/x%20y%23z.whl"


def test_a_commit_shows_on_the_next_page_never_a_kept_one(
    client: FlaskClient, tmp_path: Path
) -> None:
    # A front keeps what it parsed and rendered of the live manifests: a node that asks
    # again after a sync committed must see the new closure, and after an unpublish none.
    store = LocalStore(tmp_path / "store")
    pages = (
        "/simple/my-pkg/",
        "/tfmirror/pypi/+simple/my-pkg/",
        "/tfmirror/default/+simple/my-pkg/",
    )
    before = {page: client.get(page, headers={"Accept": PEP691}) for page in pages}
    newer = Wheel("my-pkg", "1.1", "my_pkg-1.1-py3-none-any.whl", "https://up/y.whl", SHA, 1)
    (manifest,) = load_all(store)
    save_manifest(store, replace(manifest, files=[*manifest.files, newer]))
    for page, old in before.items():
        again = client.get(page, headers={"Accept": PEP691, "If-None-Match": old.headers["ETag"]})
        assert again.status_code == 200, page
        assert [f["filename"] for f in again.get_json()["files"]] == [
            FILENAME,
            "my_pkg-1.1-py3-none-any.whl",
        ]
        assert "my_pkg-1.1-py3-none-any.whl" in client.get(page).get_data(as_text=True)
    assert "my-pkg" in client.get("/simple/").get_data(as_text=True)
    delete_manifest(store, manifest)
    for page in pages:
        assert client.get(page).status_code == 404, page
    assert "my-pkg" not in client.get("/simple/").get_data(as_text=True)
