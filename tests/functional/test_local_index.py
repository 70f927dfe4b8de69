"""The build sandbox's only way out: upstream's pages, each file fetched verified into
the store and sent from there. A local upstream; HTTP over the index's Unix socket."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mirror.core.hosts import HostPolicy
from mirror.core.storage import LocalStore
from mirror.core.upstream import FetchPolicy, ProjectPages
from mirror.pypi.local_index import LocalIndex, Session
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec

PEP691 = "application/vnd.pypi.simple.v1+json"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("sandbox")
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(self.path))


def ask(
    index: LocalIndex | Session, method: str, path: str, **headers: str
) -> tuple[int, bytes, dict[str, str]]:
    if isinstance(index, LocalIndex):  # as a sandbox with no cooldown sees it
        with index.session(None) as session:
            return ask(session, method, path, **headers)
    conn = _UnixConnection(index.socket)
    conn.request(method, path, headers={"Accept": PEP691, **headers})
    answer = conn.getresponse()
    body = answer.read()
    conn.close()
    return answer.status, body, dict(answer.getheaders())


@pytest.fixture
def index(upstream: Upstream, tmp_path: Path) -> Iterator[tuple[LocalIndex, LocalStore]]:
    store = LocalStore(tmp_path / "store")
    policy = FetchPolicy(timeout=2, retries=0, hosts=HostPolicy.trusting([upstream.index_url], ""))
    with LocalIndex(store, ProjectPages(upstream.index_url, 2), policy) as served:
        yield served, store


def test_files_come_verified_from_the_store_and_are_remembered(
    index: tuple[LocalIndex, LocalStore], upstream: Upstream
) -> None:
    served, store = index
    good = upstream.add(WheelSpec("alpha", "1.0"))
    bad = upstream.add(WheelSpec("alpha", "2.0"), "corrupt")

    status, body, _ = ask(served, "GET", "/simple/Alpha/")
    assert status == 200
    page = json.loads(body)
    urls = {f["filename"]: f["url"] for f in page["files"]}
    assert urls[good.spec.filename] == f"/files/{good.sha256}/{good.spec.filename}"
    assert all(url.startswith("/files/") for url in urls.values())  # nothing leads elsewhere

    with served.session(None) as build, served.session(None) as other:
        status, _, headers = ask(build, "HEAD", urls[good.spec.filename])
        assert status == 200 and headers["Content-Length"] == str(len(good.data))
        status, body, _ = ask(build, "GET", urls[good.spec.filename])
        assert status == 200 and body == good.data and store.has_blob(good.sha256)
        assert list(build.taken_by_sha()) == [good.sha256]

        # Upstream's bytes that are not the listed ones never reach the sandbox or the store.
        status, body, _ = ask(build, "GET", urls[bad.spec.filename])
        assert status == 502 and b"sha256 mismatch" in body and not store.has_blob(bad.sha256)
        # Nothing a page did not list, nothing but GET and HEAD.
        assert ask(build, "GET", f"/files/{'0' * 64}/x.whl")[0] == 404
        assert ask(build, "GET", "/simple/nosuch/")[0] == 404
        assert ask(build, "POST", "/simple/alpha/")[0] == 501
        assert list(build.taken_by_sha()) == [good.sha256]
        # A build beside it takes its own files, and is not credited with the other's.
        assert ask(other, "GET", urls[good.spec.filename])[0] == 200
        assert [t.sha256 for t in other.taken] == [good.sha256]
        assert len(build.taken) == 1
    assert not build.socket.exists()


def test_a_resolver_reads_a_wheel_by_ranges_without_downloading_it(
    index: tuple[LocalIndex, LocalStore], upstream: Upstream
) -> None:
    """Where upstream lists no PEP 658 file, uv reads METADATA out of the wheel's zip by
    ranges: they pass through to upstream, and the wheel is neither fetched nor stored."""
    served, store = index
    hosted = upstream.add(WheelSpec("alpha", "1.0", padding=50_000))
    ask(served, "GET", "/simple/alpha/")
    path = f"/files/{hosted.sha256}/{hosted.spec.filename}"
    assert ask(served, "HEAD", path)[2]["Accept-Ranges"] == "bytes"
    size = len(hosted.data)

    status, body, headers = ask(served, "GET", path, Range="bytes=-100")
    assert status == 206 and body == hosted.data[-100:]
    assert headers["Content-Range"] == f"bytes {size - 100}-{size - 1}/{size}"
    status, body, _ = ask(served, "GET", path, Range="bytes=10-19")
    assert status == 206 and body == hosted.data[10:20]
    assert not store.has_blob(hosted.sha256) and upstream.bytes_served < size


def test_where_upstream_lists_no_metadata_file_one_is_made_from_ranges(
    index: tuple[LocalIndex, LocalStore], upstream: Upstream
) -> None:
    served, store = index
    hosted = upstream.add(WheelSpec("alpha", "1.0", requires=["beta>=2"], padding=300_000))
    hosted.lists_metadata = False
    status, body, _ = ask(served, "GET", "/simple/alpha/")
    (entry,) = json.loads(body)["files"]
    assert entry["core-metadata"] is True  # PEP 658: a file with no hash given

    status, body, _ = ask(served, "GET", f"{entry['url']}.metadata")

    assert status == 200 and body == hosted.spec.metadata()
    assert b"Requires-Dist: beta>=2" in body
    assert not store.has_blob(hosted.sha256) and upstream.bytes_served < len(hosted.data)


def test_metadata_takes_one_request_and_a_resolver_walking_down_releases_is_read_ahead(
    index: tuple[LocalIndex, LocalStore], upstream: Upstream
) -> None:
    """uv reads METADATA one release after another when it backtracks (60 of
    apache-beam's for TFX): each read is one range request (the wheel's tail), and once
    a second release is asked for, the next older ones are read before uv asks."""
    served, _ = index
    hosted = {v: upstream.add(WheelSpec("alpha", v, padding=300_000)) for v in "12345"}
    for one in hosted.values():
        one.lists_metadata = False
    page = json.loads(ask(served, "GET", "/simple/alpha/")[1])
    urls = {f["filename"]: f["url"] for f in page["files"]}

    def metadata(v: str) -> bytes:
        status, body, _ = ask(served, "GET", f"{urls[hosted[v].spec.filename]}.metadata")
        assert status == 200
        return body

    def hits(*versions: str) -> list[int]:
        return [upstream.hits[hosted[v].spec.filename] for v in versions]

    assert metadata("5") == hosted["5"].spec.metadata()
    assert hits("5", "4", "3", "2", "1") == [1, 0, 0, 0, 0]  # one range; no guess yet
    assert metadata("4") == hosted["4"].spec.metadata()
    deadline = time.monotonic() + 10
    while hits("3", "2", "1") != [1, 1, 1] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hits("3", "2", "1") == [1, 1, 1]  # read ahead, before anyone asked
    assert [metadata(v) for v in "321"] == [hosted[v].spec.metadata() for v in "321"]
    assert hits("5", "4", "3", "2", "1") == [1, 1, 1, 1, 1]  # and not read again


def test_dozens_of_connections_at_once_are_all_answered_at_once(
    index: tuple[LocalIndex, LocalStore],
) -> None:
    """uv opens dozens of connections to the index at once. With socketserver's backlog
    of 5 the rest waited for TCP's retransmission (1 s, then 3, 7...): a resolve sat
    idle for 20 s. Now each is answered well inside the first retransmission."""
    served, _ = index
    host, port = served.url().split("/")[2].split(":")
    request = f"GET /simple/nosuch/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    start = threading.Barrier(100)

    def ask_once() -> float:
        start.wait()
        began = time.monotonic()
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(request.encode())
            assert sock.recv(64).startswith(b"HTTP/1.0 404")
        return time.monotonic() - began

    with ThreadPoolExecutor(100) as pool:
        waits = sorted(pool.map(lambda _: ask_once(), range(100)))
    assert waits[-1] < 0.9, f"slowest of 100: {waits[-1]:.2f} s (TCP retransmitted)"
