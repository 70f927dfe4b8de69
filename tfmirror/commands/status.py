"""`tfmirror status`: what the status page shows, as text or JSON."""

from __future__ import annotations

import argparse
import json

from mirror.core.config import Config
from mirror.core.storage import open_store
from mirror.proxy.nginx import entry_point
from sync_jobs.page import render_text
from sync_jobs.status import collect_status
from tfmirror.commands.common import EXIT_FAILED, EXIT_OK


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="the /api/status document")


def run(config: Config, args: argparse.Namespace) -> int:
    status = collect_status(config, open_store(config.storage), entry_point(config).base_url)
    if args.json:
        print(json.dumps(status.as_json(), indent=1))
        return EXIT_OK
    print(render_text(status), end="")
    return EXIT_OK if status.healthy else EXIT_FAILED
