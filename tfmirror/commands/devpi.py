"""`tfmirror devpi`: the configured devpi-server in the foreground."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from mirror.core.children import private_server, scrubbed_env
from mirror.core.errors import StoreError, UsageError
from mirror.devpi.client import DevpiClient
from mirror.devpi.errors import DevpiError
from mirror.devpi.publish import DevpiIndex
from mirror.devpi.server import command, initialise, user_password, wait_ready
from tfmirror.commands.common import EXIT_FAILED, EXIT_OK, forward_signals
from tfmirror.parts import MirrorParts


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--serverdir", metavar="DIR", help="override [devpi] serverdir")
    parser.add_argument("--host", metavar="ADDR", help="listen address (default: [devpi] url's)")


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    config = parts.config
    devpi = config.devpi
    if args.serverdir is not None:
        if not args.serverdir.strip():
            raise UsageError("--serverdir is empty; give a folder, or leave it out for [devpi]'s")
        devpi = replace(devpi, serverdir=Path(args.serverdir).resolve())
    if devpi.serverdir is None:
        raise UsageError(
            f"[devpi] serverdir is not set (devpi at {devpi.url} is external); "
            "set it, or pass --serverdir"
        )
    initialise(devpi.serverdir)
    proc = subprocess.Popen(
        command(devpi, listen=args.host), env=scrubbed_env(), preexec_fn=private_server
    )
    forward_signals(lambda signum: proc.terminate())
    try:
        wait_ready(devpi.url, proc)
        client = DevpiClient(devpi, user_password(devpi))
        client.bootstrap(config.devpi_mirror_url)
        # What a quarantine left to devpi's next start (see tfmirror.services.own_devpi).
        store = parts.store
        DevpiIndex(client, store, config.devpi_mirror_url).settle_quarantine()
        print(f"devpi serving {devpi.index_url}", flush=True)
    except (DevpiError, StoreError) as exc:
        print(f"tfmirror: devpi: {exc}", file=sys.stderr)
    code = proc.wait()
    return EXIT_OK if code in (0, -signal.SIGTERM, -signal.SIGINT) else EXIT_FAILED
