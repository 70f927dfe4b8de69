"""`verify` proves installs through this mirror's nginx only: another server answering
`/healthz/proxy` on `[proxy]`'s address (another mirror's nginx on the default port
8000) is not taken for it, and with `[proxy] enabled = false` nginx is never asked."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mirror.core.config import Config, parse_config
from mirror.proxy.nginx import NginxProcess, plan_for
from testkit.servers import free_port
from verify.airgap import fleet_route


class OtherServer:
    """A plain HTTP server on loopback answering everything 200 "ok", counting asks."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.asked.append(self.path)
                body = b"ok\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def other() -> Iterator[OtherServer]:
    server = OtherServer()
    yield server
    server.close()


def mirror_config(tmp_path: Path, port: int, enabled: bool = True) -> Config:
    return parse_config(
        {
            "storage": {"path": "store"},
            "web": {"port": free_port()},
            "devpi": {"url": f"http://127.0.0.1:{free_port()}"},
            "proxy": {"enabled": enabled, "port": port, "workdir": "proxy"},
        },
        tmp_path,
    )


def test_another_server_on_the_proxy_address_is_not_this_mirrors_nginx(
    other: OtherServer, tmp_path: Path
) -> None:
    config = mirror_config(tmp_path, other.port)
    # Even after this mirror ran its own nginx there once (its config is in the workdir).
    plan_for(config)

    route = fleet_route(config)

    assert other.asked == ["/healthz/proxy"]
    assert route.via != "through nginx" and not route.base_url.endswith(f":{other.port}")


def test_with_the_proxy_disabled_nginx_is_never_asked(other: OtherServer, tmp_path: Path) -> None:
    config = mirror_config(tmp_path, other.port, enabled=False)

    route = fleet_route(config)

    assert other.asked == []
    assert route.via != "through nginx"


def test_this_mirrors_own_nginx_is_taken(tmp_path: Path, nginx: str) -> None:
    config = mirror_config(tmp_path, free_port())
    with NginxProcess(nginx, plan_for(config)):
        route = fleet_route(config)
    assert route.via == "through nginx" and route.base_url == config.proxy.base_url
