"""Verified streaming downloads against a local upstream that misbehaves on purpose."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mirror.core.errors import DownloadError
from mirror.core.hosts import HostPolicy
from mirror.core.storage import LocalStore
from mirror.core.upstream import FetchPolicy, fetch_verified
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec

LOOPBACK = HostPolicy.trusting(["127.0.0.1"], "allow_hosts")
FAST = FetchPolicy(timeout=1.0, retries=2, backoff=0.05, hosts=LOOPBACK)


def url(up: Upstream, spec: WheelSpec) -> str:
    return f"{up.url}/files/{spec.filename}"


def test_good_file_is_published(upstream: Upstream, tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    hosted = upstream.add(WheelSpec("alpha", "1.0"))
    got = fetch_verified(store, url(upstream, hosted.spec), hosted.sha256, len(hosted.data), FAST)
    assert (got.sha256, got.size) == (hosted.sha256, len(hosted.data))
    assert store.open_blob(hosted.sha256).read() == hosted.data


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ("corrupt", "sha256 mismatch"),
        ("cut", "connection broken"),
        ("slow", "Timeout"),
    ],
)
def test_bad_file_is_rejected_and_leaves_nothing(
    upstream: Upstream, tmp_path: Path, behaviour: str, reason: str
) -> None:
    store = LocalStore(tmp_path)
    hosted = upstream.add(WheelSpec("bad", "1.0", padding=300_000), behaviour)
    with pytest.raises(DownloadError, match=reason):
        fetch_verified(store, url(upstream, hosted.spec), hosted.sha256, len(hosted.data), FAST)
    assert not store.has_blob(hosted.sha256)
    assert list(store.iter_blobs()) == []
    assert list((tmp_path / "tmp").iterdir()) == []


def test_listed_size_that_lies_is_rejected(upstream: Upstream, tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    hosted = upstream.add(WheelSpec("sized", "1.0"))
    # Content-Length disagrees with the index: refused before the body is read.
    with pytest.raises(DownloadError, match=f"declares {len(hosted.data)} bytes"):
        fetch_verified(store, url(upstream, hosted.spec), hosted.sha256, 10, FAST)
    with pytest.raises(DownloadError, match="the index lists"):
        fetch_verified(store, url(upstream, hosted.spec), hosted.sha256, len(hosted.data) + 5, FAST)
    assert list(store.iter_blobs()) == []


def test_500_then_200_is_retried(upstream: Upstream, tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    hosted = upstream.add(WheelSpec("flaky", "1.0"), "flaky")
    fetch_verified(store, url(upstream, hosted.spec), hosted.sha256, len(hosted.data), FAST)
    assert upstream.hits["flaky-1.0-py3-none-any.whl"] == 2
    assert store.has_blob(hosted.sha256)


def test_404_is_not_retried(upstream: Upstream, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_verified(LocalStore(tmp_path), f"{upstream.url}/files/none.whl", "0" * 64, 1, FAST)


# ------------------------------------------------------------------ memory stays flat

BLOCK = hashlib.sha512(b"block").digest() * (1024 * 1024 // 64)  # 1 MiB


@pytest.fixture
def big_file_server() -> Iterator[tuple[str, int, str]]:
    """Serves 256 MiB made of one repeated 1 MiB block, never holding the whole file."""
    blocks = 256
    digest = hashlib.sha256()
    for _ in range(blocks):
        digest.update(BLOCK)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(blocks * len(BLOCK)))
            self.end_headers()
            for _ in range(blocks):
                self.wfile.write(BLOCK)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield (
        f"http://127.0.0.1:{server.server_address[1]}/big.whl",
        blocks * len(BLOCK),
        digest.hexdigest(),
    )
    server.shutdown()
    server.server_close()


def test_memory_stays_flat_for_a_large_file(
    big_file_server: tuple[str, int, str], tmp_path: Path
) -> None:
    """Measured in a process of its own: tracemalloc counts every thread's allocations,
    and threads earlier tests left in this one (their servers' handlers) made the
    peak depend on the order tests ran in."""
    big_url, size, sha = big_file_server
    script = (
        "import sys, tracemalloc\n"
        "from pathlib import Path\n"
        "from mirror.core.storage import LocalStore\n"
        "from tests.functional.test_download import FAST\n"
        "from mirror.core.upstream import fetch_verified\n"
        "tracemalloc.start()\n"
        "store, url, sha, size = LocalStore(Path(sys.argv[1])), *sys.argv[2:4], int(sys.argv[4])\n"
        "fetch_verified(store, url, sha, size, FAST)\n"
        "print(tracemalloc.get_traced_memory()[1])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), big_url, sha, str(size)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    peak = int(done.stdout.strip().splitlines()[-1])
    assert LocalStore(tmp_path).blob_size(sha) == size
    # 256 MiB moved; a streaming download holds a few 1 MiB chunks at most.
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"
