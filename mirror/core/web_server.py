"""Serving a web front: waitress (already a devpi-server dependency), threaded, streaming
files with wsgi.file_wrapper, in the foreground or in a daemon thread (`WebServer`, for
`up` and a sync's own front), or gunicorn's pre-fork workers in production;
`build_server` is the one waitress setup for every server tfmirror runs (devpi too), and
the checks before a start (can it listen there, is a tfmirror front there already) live
here."""

from __future__ import annotations

import errno
import resource
import socket
import threading
from collections.abc import Callable
from typing import Any

import requests
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server

THREADS = 32
# Each connection holds a descriptor, a download also the file it sends; this many stay
# free for everything else (logs, the store, devpi's sqlite, a sync's children).
RESERVED_FILES = 256
MAX_CONNECTIONS = 10_000
# Connections the kernel holds for us while the loop accepts a burst (nginx's too).
BACKLOG = 4096
ACCEPT_BURST = 256
# waitress reads a file response in pieces as large as the socket's send buffer, which
# the kernel reports as 4 MiB on loopback: with 32 downloads at once that held ~200 MB.
SEND_PIECE = 256 * 1024


class _Channel(HTTPChannel):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sendbuf_len: int = min(self.sendbuf_len, SEND_PIECE)


def open_files_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (a service's
    soft limit is often 1024); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # a limit the kernel refuses (nr_open): keep the one we have
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_limit(open_files: int) -> int:
    """As many connections as the descriptors allow, two each (socket and file): past
    the limit waitress stops accepting (the kernel's backlog holds the rest) instead
    of running out of descriptors."""
    return max(16, min(MAX_CONNECTIONS, (open_files - RESERVED_FILES) // 2))


def build_server(app: Any, *, ident: str, **kw: Any) -> Any:
    """A waitress server for `app` (create_server's keywords): a poll() loop, and a
    connection limit below this process's open-files limit (raised to the hard one).
    waitress's default loop is select(), which raises ValueError for a descriptor past
    1024 and ends the loop: about a thousand idle connections stopped the server."""
    settings = {"backlog": BACKLOG, **kw}
    settings["asyncore_use_poll"] = True
    settings["connection_limit"] = connection_limit(open_files_limit())
    server = create_server(app, ident=ident, **settings)
    # One listener, or several (a host name with IPv4 and IPv6 addresses) in one map.
    listeners = [server] if isinstance(server, BaseWSGIServer) else list(server.map.values())
    for listener in listeners:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = _Channel
            _accept_in_bursts(listener)
    return server


def _accept_in_bursts(listener: Any) -> None:
    """Accept what waits, up to ACCEPT_BURST, each time the listener is readable.
    waitress accepts one connection per turn of its loop, and a turn costs a look at
    every connection: with thousands open, a burst of new ones took a minute to get in
    and a fresh client waited behind them."""
    accept_one = listener.handle_accept

    def handle_accept() -> None:
        for _ in range(ACCEPT_BURST):
            held = len(listener._map)
            if not listener.readable():  # at the connection limit
                return
            accept_one()
            if len(listener._map) == held:  # nothing was waiting
                return

    listener.handle_accept = handle_accept


def _server(app: Any, host: str, port: int, **kw: Any) -> Any:
    # Archives leave through wsgi.file_wrapper, which frees the thread at once; only
    # connections are bounded (waitress's default of 100 stops accepting beyond it).
    return build_server(
        app, host=host, port=port, threads=THREADS, ident="tfmirror", channel_timeout=300, **kw
    )


class WebServer:
    """The web front on host:port, in a daemon thread; a context manager that stops it."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        # A short loop timeout: stopping closes the sockets from another thread, which
        # does not wake the loop's poll(); with waitress's default of 1 s every sync that
        # started its own front paid up to a second to stop it.
        self._server = _server(app, host, port, asyncore_loop_timeout=0.05)
        self._thread = threading.Thread(target=self._run, name="web", daemon=True)
        self._stopping = False
        self._failure = "its server loop returned"

    def _run(self) -> None:
        try:
            self._server.run()
        except BaseException as exc:
            self._failure = f"its server loop died: {type(exc).__name__}: {exc}"
            raise  # the thread's excepthook prints the traceback

    def down(self) -> str | None:
        """Why the front stopped serving on its own (its loop died), or None: the
        process around it must not live on with nothing answering on its port."""
        started = self._thread.ident is not None
        if self._stopping or not started or self._thread.is_alive():
            return None
        return f"the web front on port {self.port} stopped: {self._failure}"

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    def __enter__(self) -> WebServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        from waitress import wasyncore

        self._stopping = True
        server = self._server
        server.task_dispatcher.shutdown()
        if not self._thread.is_alive():  # its loop died: nothing left to wake
            wasyncore.close_all(server._map)
            return
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
