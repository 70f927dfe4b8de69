"""devpi-server answers 500 now and then under load to calls that succeed when repeated:
the client asks again, a bounded number of times, and then reports what devpi said."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mirror.core.config import DevpiConfig
from mirror.devpi.client import PULL_ATTEMPTS, DevpiClient
from mirror.devpi.errors import DevpiError


class FlakyDevpi(ThreadingHTTPServer):
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.asked = 0
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: FlakyDevpi

    def do_POST(self) -> None:
        self.server.asked += 1
        failing = self.server.asked <= self.server.failures
        body = b"Internal Server Error" if failing else b""
        self.send_response(500 if failing else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def flaky(failures: int) -> Iterator[tuple[FlakyDevpi, DevpiClient]]:
    server = FlakyDevpi(failures)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield server, DevpiClient(DevpiConfig(url=url, index="x/y"), "pw")
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def once() -> Iterator[tuple[FlakyDevpi, DevpiClient]]:
    yield from flaky(1)


@pytest.fixture
def always() -> Iterator[tuple[FlakyDevpi, DevpiClient]]:
    yield from flaky(10**6)


def test_a_500_is_asked_again(once: tuple[FlakyDevpi, DevpiClient]) -> None:
    server, client = once
    client.refresh("alpha")
    assert server.asked == 2


def test_a_devpi_that_keeps_failing_is_reported_after_a_bounded_number_of_asks(
    always: tuple[FlakyDevpi, DevpiClient],
) -> None:
    server, client = always
    with pytest.raises(DevpiError, match="HTTP 500"):
        client.refresh("alpha")
    assert server.asked == PULL_ATTEMPTS
