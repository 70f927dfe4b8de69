"""`tfmirror lock`: a hash-pinned requirements file for an environment's target."""

from __future__ import annotations

import argparse
import sys

from mirror.core.config import Config
from mirror.core.storage import open_store
from mirror.proxy.nginx import entry_point
from mirror.pypi.lockfile import render_lock
from mirror.pypi.manifest import load_manifest
from tfmirror.commands.common import EXIT_FAILED, EXIT_OK, pick_environment, pick_target


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", metavar="NAME", help="environment (see `tfmirror targets`)")
    parser.add_argument("--target", metavar="ID", help="target id (see `tfmirror targets`)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")


def run(config: Config, args: argparse.Namespace) -> int:
    env = pick_environment(config, args.env)
    target = pick_target(env, args.target)
    manifest = load_manifest(open_store(config.storage), env.name, target.id)
    if manifest is None:
        print(
            f"tfmirror: {env.name}/{target.id} has nothing mirrored yet: run `tfmirror sync pypi`",
            file=sys.stderr,
        )
        return EXIT_FAILED
    entry = entry_point(config)
    text = render_lock(manifest, entry.environment_url(env.name))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK
