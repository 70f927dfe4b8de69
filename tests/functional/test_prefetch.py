"""Prefetch never leaves half a model where tensorflow_hub would load it."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hub_cache.errors import PrefetchError
from hub_cache.limits import ArchiveLimits
from hub_cache.prefetch import cache_folder, prefetch
from tests.support.archives import FAKE_MODEL, cut_at_member_boundary, tar_bytes

HANDLE = "https://tfhub.dev/google/cut/1"
CAPS = ArchiveLimits(1 << 30, 100)
GOOD = tar_bytes(FAKE_MODEL, compress=False)
CUT = cut_at_member_boundary(GOOD)


class FakeMirror:
    """Answers /hub/google/cut/1 (JSON facts) and its archive, as told."""

    def __init__(self) -> None:
        self.listed = GOOD  # what the JSON's sha256 and size describe
        self.served = GOOD  # what the archive URL returns
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if "tf-hub-format=compressed" in self.path:
                    body = mirror.served
                else:
                    sha = hashlib.sha256(mirror.listed).hexdigest()
                    body = json.dumps({"sha256": sha, "size": len(mirror.listed)}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def mirror() -> Iterator[FakeMirror]:
    fake = FakeMirror()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_good_model_lands_and_a_second_run_skips_it(mirror: FakeMirror, tmp_path: Path) -> None:
    assert prefetch(HANDLE, tmp_path, mirror.url, CAPS).status == "fetched"
    folder = cache_folder(tmp_path, HANDLE)
    assert (folder / "saved_model.pb").read_bytes() == FAKE_MODEL["saved_model.pb"]
    assert prefetch(HANDLE, tmp_path, mirror.url, CAPS).status == "unchanged"


def test_download_that_does_not_match_the_manifest_is_refused(
    mirror: FakeMirror, tmp_path: Path
) -> None:
    mirror.served = CUT
    with pytest.raises(PrefetchError, match="the mirror's manifest says"):
        prefetch(HANDLE, tmp_path, mirror.url, CAPS)
    assert list(tmp_path.iterdir()) == []


def test_archive_cut_at_a_member_boundary_is_refused_even_if_hashes_agree(
    mirror: FakeMirror, tmp_path: Path
) -> None:
    mirror.listed = mirror.served = CUT
    with pytest.raises(PrefetchError, match="end-of-archive marker"):
        prefetch(HANDLE, tmp_path, mirror.url, CAPS)
    assert list(tmp_path.iterdir()) == []


def test_a_new_version_replaces_the_old_folder_whole(mirror: FakeMirror, tmp_path: Path) -> None:
    prefetch(HANDLE, tmp_path, mirror.url, CAPS)
    newer = tar_bytes({**FAKE_MODEL, "saved_model.pb": b"v2"}, compress=False)
    mirror.listed = mirror.served = newer
    assert prefetch(HANDLE, tmp_path, mirror.url, CAPS).status == "fetched"
    folder = cache_folder(tmp_path, HANDLE)
    assert (folder / "saved_model.pb").read_bytes() == b"v2"
    # The old copy is set aside for a reader that may still be in it, and removed by a
    # later prefetch once it is old enough.
    (old,) = tmp_path.glob("*.old")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [folder.name, f"{folder.name}.descriptor.txt", old.name]
    )
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert prefetch(HANDLE, tmp_path, mirror.url, CAPS).status == "unchanged"
    assert not old.exists()


def test_a_page_that_is_not_a_model_or_a_cache_that_is_a_file_is_a_clear_error(
    mirror: FakeMirror, tmp_path: Path
) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    with pytest.raises(PrefetchError, match=r"cache .*cache: File exists"):
        prefetch(HANDLE, blocker, mirror.url, CAPS)
    other = ThreadingHTTPServer(("127.0.0.1", 0), NotAMirror)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{other.server_address[1]}"
        with pytest.raises(PrefetchError, match="is not a tfmirror model page"):
            prefetch(HANDLE, tmp_path / "c2", url, CAPS)
    finally:
        other.shutdown()
        other.server_close()


class NotAMirror(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b'{"models": []}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
