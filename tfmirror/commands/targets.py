"""`tfmirror targets`: each environment, its index, its targets and what each holds."""

from __future__ import annotations

import argparse

from mirror.core.config import Config
from mirror.core.storage import open_store
from mirror.proxy.nginx import entry_point
from mirror.pypi.manifest import load_manifest
from tfmirror.commands.common import EXIT_OK


def arguments(parser: argparse.ArgumentParser) -> None:
    return None  # no options of its own


def run(config: Config, args: argparse.Namespace) -> int:
    store = open_store(config.storage)
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
