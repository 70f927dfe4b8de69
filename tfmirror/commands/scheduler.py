"""`tfmirror scheduler`: the scheduled jobs until SIGTERM."""

from __future__ import annotations

import argparse

from sync_jobs.scheduler import run_forever
from tfmirror.parts import MirrorParts


def arguments(parser: argparse.ArgumentParser) -> None:
    return None  # no options of its own


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    return run_forever(parts.config, parts.runner)
