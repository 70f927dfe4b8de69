"""`tfmirror serve`: the web front in the foreground (waitress, or gunicorn workers)."""

from __future__ import annotations

import argparse
from dataclasses import replace

from mirror.core.web_server import serve_forever, serve_gunicorn
from tfmirror.app import create_app
from tfmirror.commands.common import EXIT_OK, check_listen, port_number
from tfmirror.parts import MirrorParts


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", metavar="ADDR", help="override [web] host")
    parser.add_argument("--port", type=port_number, metavar="N", help="override [web] port")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="run under gunicorn with N worker processes (production)",
    )


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    config = parts.config
    web = replace(config.web, host=args.host or config.web.host, port=args.port or config.web.port)
    config = replace(config, web=web)  # the parts (and each gunicorn worker's) are built on it
    check_listen(web.host, web.port, "--host/--port or [web] host/port")
    print(f"tfmirror web front on {web.base_url}/ (status page, /simple/, /hub/)", flush=True)
    if args.workers > 0:
        serve_gunicorn(
            f"{web.host}:{web.port}", args.workers, lambda: create_app(MirrorParts(config))
        )
    else:
        serve_forever(create_app(MirrorParts(config)), web.host, web.port)
    return EXIT_OK
