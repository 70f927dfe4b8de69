"""devpi-server as tfmirror starts it: devpi's own command line, app and state, served by
tfmirror's one waitress setup (mirror.core.web_server), because devpi-server 6 hands its
app to waitress.serve(), whose select() loop ended the server once a descriptor passed
1024 (about a thousand idle connections left devpi running and answering nothing), and
has no option for waitress's poll() loop: this runs devpi's main() with its serving step
(main.wsgi_run) replaced. Run as `python -m mirror.devpi.launch devpi-server
DEVPI-SERVER-ARGS...`, the name first so `ps` shows devpi-server."""

from __future__ import annotations

import sys
from typing import Any

import devpi_server.main as devpi_main

from mirror.core.web_server import build_server

IDENT = "devpi-server"  # the Server header; waitress's own says which server it is


def serve(xom: Any, app: Any) -> int:
    """What devpi's wsgi_run does, with the keywords devpi gives waitress (address,
    threads, body size, trusted proxies); build_server sets the loop and the limits."""
    settings = dict(xom.config.waitress_info["kwargs"])
    server = build_server(app, ident=IDENT, **settings)
    xom.log.info("serving at %s", ", ".join(xom.config.waitress_info["addresses"]))
    xom.log.info(
        "using %s threads, up to %s connections (poll)",
        server.adj.threads,
        server.adj.connection_limit,
    )
    server.run()  # returns on Ctrl-C (waitress catches it), as devpi's own did
    return 0


def main(argv: list[str]) -> int:
    if not callable(getattr(devpi_main, "wsgi_run", None)):
        # A devpi-server that serves some other way: refuse rather than run it on
        # waitress's select() loop unnoticed.
        print("tfmirror: this devpi-server has no main.wsgi_run to replace", file=sys.stderr)
        return 1
    devpi_main.wsgi_run = serve
    if argv[:1] == ["devpi-server"]:
        argv = argv[1:]
    return int(devpi_main.main(["devpi-server", *argv]) or 0)  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
