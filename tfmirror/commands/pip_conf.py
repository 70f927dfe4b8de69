"""`tfmirror pip-conf`: the pip.conf (and uv) lines for the fleet."""

from __future__ import annotations

import argparse

from mirror.proxy.nginx import entry_point
from mirror.pypi.lockfile import render_pip_conf
from tfmirror.commands.common import EXIT_OK, must_snapshot, pick_environment
from tfmirror.parts import MirrorParts


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env", metavar="NAME", help="one environment's index (default: the union of all)"
    )
    parser.add_argument(
        "--snapshot",
        metavar="NAME",
        help="hold the node on a snapshot's index (default: what is promoted, else live)",
    )


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    config = parts.config
    entry = entry_point(config)
    snapshot = args.snapshot and must_snapshot(parts.store, args.snapshot).name
    if args.env is None:
        print(render_pip_conf(entry.union_url(snapshot)), end="")
    else:
        env = pick_environment(config, args.env)
        print(render_pip_conf(entry.environment_url(env.name, snapshot), env.name), end="")
    return EXIT_OK
