"""`tfmirror proxy`: nginx, the fleet's entry point, in the foreground (or its config)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from mirror.core.errors import UsageError
from mirror.proxy.nginx import INSTALL_HINT, NginxProcess, nginx_binary, plan_for, render
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


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    config = parts.config
    serverdir = Path(args.devpi_serverdir) if args.devpi_serverdir else None
    if serverdir is not None and not serverdir.is_dir():
        raise UsageError(f"--devpi-serverdir {serverdir}: no such folder")
    plan = plan_for(config, args.host, args.port, serverdir)
    if args.print_config:
        sys.stdout.write(render(plan))
        return EXIT_OK
    nginx = nginx_binary(config.proxy.nginx)  # run when asked, whatever [proxy] enabled says
    if nginx is None:
        raise UsageError(f"{config.proxy.nginx} not found: {INSTALL_HINT}")
    proc = NginxProcess(nginx, plan).start()
    forward_signals(lambda signum: proc.quit())
    print(f"fleet entry point on http://{plan.listen}/ (pip index, TF Hub, status)", flush=True)
    code = proc.wait()
    return EXIT_OK if code in (0, -signal.SIGTERM, -signal.SIGQUIT) else EXIT_FAILED
