"""`tfmirror targets`: each environment, its index, its targets and what each holds."""

from __future__ import annotations

import argparse

from mirror.proxy.nginx import entry_point
from mirror.pypi.manifest import load_manifest
from tfmirror.commands.common import EXIT_OK
from tfmirror.parts import MirrorParts


def arguments(parser: argparse.ArgumentParser) -> None:
    return None  # no options of its own


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    config = parts.config
    store = parts.store
    entry = entry_point(config)
    for env in config.pypi.environments:
        print(f"{env.name}\t{entry.environment_url(env.name)}")
        for target in env.targets:
            manifest = load_manifest(store, env.name, target.id)
            if manifest is None:
                print(f"  {target.id}\tnot synced yet")
            else:
                size = sum(w.size or 0 for w in manifest.files) / 1e6
                print(
                    f"  {target.id}\t{len(manifest.files)} files\t{size:.0f} MB\t"
                    f"synced {manifest.synced_at}"
                )
    return EXIT_OK
