"""`tfmirror status`: what the status page shows, as text or JSON.

Exit 0 when healthy; 1 while a job is failing or verify has never finished (health
"unknown"), and when there is no mirror here yet (no store: nothing is created)."""

from __future__ import annotations

import argparse
import json
import sys

from mirror.proxy.nginx import entry_point
from sync_jobs.page import render_text
from sync_jobs.status import collect_status
from tfmirror.commands.common import EXIT_FAILED, EXIT_OK
from tfmirror.parts import MirrorParts


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="the /api/status document")


def _no_store(parts: MirrorParts) -> str | None:
    """Where the config's store would be, if nothing is there yet. Asked before the
    store is opened: opening a local one makes its folder, and a status report of an
    empty folder would read "all jobs ok", every job "never run"."""
    storage = parts.config.storage
    if storage.backend == "local":
        path = storage.path
        held = path.is_dir() and any(path.iterdir())
        return None if held else str(path)
    store = parts.store
    if store.list("runs/") or store.list("manifests/"):
        return None
    return store.describe()


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    config = parts.config
    missing = _no_store(parts)
    if missing is not None:
        read = f"the config {config.source}" if config.source else "the built-in config"
        print(
            f"tfmirror status: no mirror here yet: nothing at {missing} ({read}).\n"
            "Start one here with `tfmirror up` (or `tfmirror sync pypi`), or point "
            "--config at a mirror's tfmirror.toml.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    status = collect_status(config, parts.store, entry_point(config).base_url)
    if args.json:
        print(json.dumps(status.as_json(), indent=1))
        return EXIT_OK
    print(render_text(status), end="")
    return EXIT_OK if status.healthy else EXIT_FAILED
