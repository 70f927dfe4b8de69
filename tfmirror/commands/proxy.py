"""`tfmirror proxy`: nginx, the fleet's entry point, in the foreground (or its config);
with --edge URL, a rack's edge cache of the site mirror at URL instead (no config file
needed: mirror.proxy.edge)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from mirror.core.errors import UsageError
from mirror.proxy.edge import edge_plan_for, megabytes
from mirror.proxy.nginx import (
    INSTALL_HINT,
    NginxPlan,
    NginxProcess,
    nginx_binary,
    plan_for,
    render,
)
from tfmirror.commands.common import EXIT_FAILED, EXIT_OK, forward_signals, port_number
from tfmirror.parts import MirrorParts


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", metavar="ADDR", help="override [proxy] host")
    parser.add_argument("--port", type=port_number, metavar="N", help="override [proxy] port")
    parser.add_argument(
        "--devpi-serverdir",
        metavar="DIR",
        help="devpi's serverdir, from which nginx sends devpi's files (default: [devpi])",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the nginx config and exit"
    )
    edge = parser.add_argument_group("a rack's edge cache of a site mirror")
    edge.add_argument(
        "--edge",
        metavar="URL",
        help="cache the site mirror at URL (http://site:8000) on this machine's disk",
    )
    edge.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="the edge's folder: config, logs, kept pages and files (default: [storage] path/edge)",
    )
    edge.add_argument(
        "--max-size",
        metavar="SIZE",
        help="disk the edge's files may take, e.g. 200g (default: all but 1 GB free)",
    )


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    config = parts.config
    plan: NginxPlan
    if args.edge:
        if args.devpi_serverdir:
            raise UsageError("--devpi-serverdir: an edge cache sends no devpi files of its own")
        cache_dir = Path(args.cache_dir) if args.cache_dir else None
        size = megabytes(args.max_size) if args.max_size else None
        edge = edge_plan_for(config, args.edge, args.host, args.port, cache_dir, size)
        plan, serving = edge, f"edge cache of {edge.site} on http://{edge.listen}/"
    else:
        if args.cache_dir or args.max_size:
            raise UsageError("--cache-dir and --max-size are an edge cache's: add --edge URL")
        serverdir = Path(args.devpi_serverdir) if args.devpi_serverdir else None
        if serverdir is not None and not serverdir.is_dir():
            raise UsageError(f"--devpi-serverdir {serverdir}: no such folder")
        plan = plan_for(config, args.host, args.port, serverdir)
        serving = f"fleet entry point on http://{plan.listen}/ (pip index, TF Hub, status)"
    if args.print_config:
        sys.stdout.write(render(plan))
        return EXIT_OK
    nginx = nginx_binary(config.proxy.nginx)  # run when asked, whatever [proxy] enabled says
    if nginx is None:
        raise UsageError(f"{config.proxy.nginx} not found: {INSTALL_HINT}")
    proc = NginxProcess(nginx, plan).start()
    forward_signals(lambda signum: proc.quit())
    print(serving, flush=True)
    code = proc.wait()
    return EXIT_OK if code in (0, -signal.SIGTERM, -signal.SIGQUIT) else EXIT_FAILED
