"""`tfmirror lock`: a hash-pinned requirements file for an environment's target."""

from __future__ import annotations

import argparse
import sys

from mirror.core.snapshots import FrozenDocuments
from mirror.proxy.nginx import entry_point
from mirror.pypi.lockfile import render_lock
from mirror.pypi.manifest import load_manifest
from tfmirror.commands.common import (
    EXIT_FAILED,
    EXIT_OK,
    must_snapshot,
    pick_environment,
    pick_target,
)
from tfmirror.parts import MirrorParts


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", metavar="NAME", help="environment (see `tfmirror targets`)")
    parser.add_argument("--target", metavar="ID", help="target id (see `tfmirror targets`)")
    parser.add_argument(
        "--snapshot", metavar="NAME", help="pin what a snapshot holds, from its index"
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    config = parts.config
    env = pick_environment(config, args.env)
    target = pick_target(env, args.target)
    store = parts.store
    snapshot = must_snapshot(store, args.snapshot) if args.snapshot else None
    source = FrozenDocuments(snapshot) if snapshot else store
    manifest = load_manifest(source, env.name, target.id)
    if manifest is None:
        if snapshot is not None:
            print(
                f"tfmirror: snapshot {snapshot.name} holds nothing for {env.name}/{target.id}",
                file=sys.stderr,
            )
        else:
            print(
                f"tfmirror: {env.name}/{target.id} has nothing mirrored yet: "
                "run `tfmirror sync pypi`",
                file=sys.stderr,
            )
        return EXIT_FAILED
    entry = entry_point(config)
    text = render_lock(
        manifest, entry.environment_url(env.name, snapshot.name if snapshot else None)
    )
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK
