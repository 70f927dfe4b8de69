"""Serving the Flask app with waitress (already a devpi-server dependency): threaded,
streams files with wsgi.file_wrapper, and can run in a background thread for a sync."""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable
from typing import Any

import requests
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server

THREADS = 32
CONNECTION_LIMIT = 2000
# waitress reads a file response in pieces as large as the socket's send buffer, which
# the kernel reports as 4 MiB on loopback: with 32 downloads at once that held ~200 MB.
SEND_PIECE = 256 * 1024


class _Channel(HTTPChannel):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sendbuf_len: int = min(self.sendbuf_len, SEND_PIECE)


def _server(app: Any, host: str, port: int, **kw: Any) -> Any:
    # Archives leave through wsgi.file_wrapper, which frees the thread at once; only
    # connections are bounded (waitress's default of 100 stops accepting beyond it).
    server = create_server(
        app,
        host=host,
        port=port,
        threads=THREADS,
        connection_limit=CONNECTION_LIMIT,
        ident="tfmirror",
        channel_timeout=300,
        **kw,
    )
    # One listener, or several (a host name with IPv4 and IPv6 addresses) in one map.
    listeners = [server] if isinstance(server, BaseWSGIServer) else list(server.map.values())
    for listener in listeners:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = _Channel
    return server


class WebServer:
    """The web front on host:port, in a daemon thread; a context manager that stops it."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        # A short loop timeout: stopping closes the sockets from another thread, which
        # does not wake the loop's poll(); with waitress's default of 1 s every sync that
        # started its own front paid up to a second to stop it.
        self._server = _server(app, host, port, asyncore_loop_timeout=0.05)
        self._thread = threading.Thread(target=self._server.run, name="web", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    def __enter__(self) -> WebServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        from waitress import wasyncore

        server = self._server
        server.task_dispatcher.shutdown()
        # Close every channel (keep-alive ones too, or the loop would wait for their
        # timeout) from inside the loop's own thread: the trigger wakes its poll() at
        # once, where closing sockets from here would leave it asleep for up to 1 s.
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        self._thread.join(timeout=10)


def listen_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on host:port (an unknown name, an address not on
    this machine, a port in use), found before anything starts; None if it can."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve host {host!r} ({exc.strerror})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"{host}:{port} is already in use by another process"
            return f"cannot listen on {host}:{port} ({exc.strerror})"
    return None


def tfmirror_serves(host: str, port: int) -> bool:
    """True if what listens on host:port is a tfmirror web front (waitress's ident)."""
    address = f"[{host}]" if ":" in host else host
    try:
        answer = requests.get(f"http://{address}:{port}/healthz", timeout=3)
    except requests.RequestException:
        return False
    return answer.headers.get("Server", "") == "tfmirror"


def serve_forever(app: Any, host: str, port: int) -> None:
    _server(app, host, port).run()


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=3).status_code < 500
    except requests.RequestException:
        return False


def serve_gunicorn(bind: str, workers: int, build: Callable[[], Any]) -> None:
    """Production serving: gunicorn's pre-fork workers (threaded), each building the app
    (`build`) from the same validated config; files go out with sendfile()."""
    from gunicorn.app.base import BaseApplication

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = {
                "bind": bind,
                "workers": workers,
                "worker_class": "gthread",
                "threads": 8,
                "timeout": 300,
                "accesslog": "-",
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return build()

    Application().run()
