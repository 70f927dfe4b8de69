"""Downloads are bounded: a byte cap (declared or counted), a deadline that cuts a
trickle, a redirect chain of bounded length over http(s) only, internal hosts reached
only when trusted, and credentials never in what is stored or said."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from mirror.core.errors import DownloadError
from mirror.core.hosts import HostPolicy
from mirror.core.storage import LocalStore
from mirror.core.upstream import FetchPolicy, fetch_verified

MiB = 2**20


class Hostile(BaseHTTPRequestHandler):
    """Answers by path: /data?n=, /stream?n= (no Content-Length), /declare?n=,
    /trickle, /redirect?to=, /loop/<i>, and /auth (the credentials it was sent)."""

    protocol_version = "HTTP/1.0"
    sent: ClassVar[list[int]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        n = int(query.get("n", "0"))
        if parts.path == "/data":
            self._body(n, declare=n)
        elif parts.path == "/stream":
            self._body(n, declare=None)
        elif parts.path == "/declare":
            self._body(4096, declare=n)
        elif parts.path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        elif parts.path == "/redirect":
            self._redirect(query["to"])
        elif parts.path.startswith("/loop/"):
            self._redirect(f"/loop/{int(parts.path.rsplit('/', 1)[1]) + 1}")
        elif parts.path == "/auth":
            body = self.headers.get("Authorization", "none").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def _redirect(self, to: str) -> None:
        self.send_response(302)
        self.send_header("Location", to)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _body(self, n: int, declare: int | None) -> None:
        self.send_response(200)
        if declare is not None:
            self.send_header("Content-Length", str(declare))
        self.end_headers()
        block = b"\1" * MiB
        sent = 0
        try:
            while sent < n:
                chunk = block[: min(MiB, n - sent)]
                self.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass
        self.sent.append(sent)


@pytest.fixture
def servers() -> Iterator[dict[str, str]]:
    """The same hostile server on two loopback addresses: 127.0.0.1 (named in the
    config, trusted) and 127.0.0.2 (an internal host nothing names)."""
    made = []
    urls = {}
    for host in ("127.0.0.1", "127.0.0.2"):
        server = ThreadingHTTPServer((host, 0), Hostile)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        made.append(server)
        urls[host] = f"http://{host}:{server.server_address[1]}"
    Hostile.sent = []
    yield urls
    for server in made:
        server.shutdown()
        server.server_close()


def policy(**kw: object) -> FetchPolicy:
    base: dict[str, object] = {
        "timeout": 2.0,
        "retries": 1,
        "backoff": 0.05,
        "hosts": HostPolicy.trusting(["127.0.0.1"], "[hub] allow_hosts"),
    }
    return FetchPolicy(**{**base, **kw})  # type: ignore[arg-type]


def fetch(store: LocalStore, url: str, pol: FetchPolicy) -> str:
    return fetch_verified(store, url, None, None, pol).url


def assert_nothing_stored(root: Path) -> None:
    store = LocalStore(root)
    assert list(store.iter_blobs()) == []
    assert list((root / "tmp").iterdir()) == []


def test_a_stream_past_the_cap_is_cut_and_not_stored(
    servers: dict[str, str], tmp_path: Path
) -> None:
    capped = policy(max_bytes=16 * MiB, cap_setting="[hub] max_uncompressed_mb")
    with pytest.raises(DownloadError, match=r"sends more, over the 16 MiB cap \(\[hub\] max_"):
        fetch(LocalStore(tmp_path), f"{servers['127.0.0.1']}/stream?n={60 * MiB}", capped)
    assert_nothing_stored(tmp_path)
    assert max(Hostile.sent or [0]) < 60 * MiB


def test_a_declared_size_past_the_cap_is_refused_before_the_body(
    servers: dict[str, str], tmp_path: Path
) -> None:
    capped = policy(max_bytes=16 * MiB, cap_setting="max_mb")
    with pytest.raises(DownloadError, match=f"declares {10**12} bytes, over the 16 MiB cap"):
        fetch(LocalStore(tmp_path), f"{servers['127.0.0.1']}/declare?n={10**12}", capped)
    assert_nothing_stored(tmp_path)


def test_a_trickle_is_cut_at_the_deadline(servers: dict[str, str], tmp_path: Path) -> None:
    began = time.monotonic()
    with pytest.raises(DownloadError, match="not done within the 2 s deadline"):
        fetch(LocalStore(tmp_path), f"{servers['127.0.0.1']}/trickle", policy(deadline=2.0))
    # Each byte came well within the 2 s read timeout: only the deadline could stop it.
    assert time.monotonic() - began < 30
    assert_nothing_stored(tmp_path)


def test_a_redirect_to_an_internal_host_is_refused_unless_trusted(
    servers: dict[str, str], tmp_path: Path
) -> None:
    inner = f"{servers['127.0.0.2']}/data?n=100"
    start = f"{servers['127.0.0.1']}/redirect?to={inner}"
    with pytest.raises(
        DownloadError, match=r"127.0.0.2 is a loopback address .*\[hub\] allow_hosts"
    ):
        fetch(LocalStore(tmp_path), start, policy())
    assert_nothing_stored(tmp_path)
    trusted = HostPolicy.trusting(["127.0.0.1", "127.0.0.2"], "[hub] allow_hosts")
    assert fetch(LocalStore(tmp_path), start, policy(hosts=trusted)) == inner


@pytest.mark.parametrize(
    ("to", "reason"),
    [
        ("file:///etc/passwd", "file URLs are refused: http and https only"),
        ("gopher://127.0.0.1/", "gopher URLs are refused"),
        ("/loop/0", "more than 10 redirects"),
    ],
)
def test_redirects_are_bounded_and_http_only(
    servers: dict[str, str], tmp_path: Path, to: str, reason: str
) -> None:
    with pytest.raises(DownloadError, match=reason):
        fetch(LocalStore(tmp_path), f"{servers['127.0.0.1']}/redirect?to={to}", policy())
    assert_nothing_stored(tmp_path)


def test_credentials_in_a_url_are_used_but_never_returned(
    servers: dict[str, str], tmp_path: Path
) -> None:
    base = servers["127.0.0.1"].replace("http://", "http://mirror:s3cret@")
    store = LocalStore(tmp_path)
    got = fetch_verified(store, f"{base}/auth", None, None, policy())
    assert store.open_blob(got.sha256).read().startswith(b"Basic ")  # sent upstream
    assert "s3cret" not in got.url and got.url == f"{servers['127.0.0.1']}/auth"
    with pytest.raises(DownloadError) as info:
        fetch(store, f"{base}/redirect?to=file:///x", policy())
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "link-local"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("fd00::1", "private (unique local)"),
        ("0.0.0.0", "unspecified"),
    ],
)
def test_internal_addresses_are_named(address: str, kind: str) -> None:
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(Exception, match=f"is a {kind.split(' ')[0]}"):
        HostPolicy().check(f"http://{host}/x")


@pytest.mark.parametrize("address", ["8.8.8.8", "203.0.113.80", "2001:4860::8888"])
def test_public_and_documentation_addresses_pass(address: str) -> None:
    host = f"[{address}]" if ":" in address else address
    HostPolicy().check(f"http://{host}/x")
