"""`tfmirror pip-conf`: the pip.conf (and uv) lines for the fleet."""

from __future__ import annotations

import argparse

from mirror.core.config import Config
from mirror.proxy.nginx import entry_point
from mirror.pypi.lockfile import render_pip_conf
from tfmirror.commands.common import EXIT_OK, pick_environment


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env", metavar="NAME", help="one environment's index (default: the union of all)"
    )


def run(config: Config, args: argparse.Namespace) -> int:
    entry = entry_point(config)
    if args.env is None:
        print(render_pip_conf(entry.index_url), end="")
    else:
        env = pick_environment(config, args.env)
        print(render_pip_conf(entry.environment_url(env.name), env.name), end="")
    return EXIT_OK
