"""`tfmirror scheduler`: the scheduled jobs until SIGTERM."""

from __future__ import annotations

import argparse

from mirror.core.config import Config
from mirror.core.storage import open_store
from sync_jobs.scheduler import run_forever
from tfmirror.commands.common import job_runner


def arguments(parser: argparse.ArgumentParser) -> None:
    return None  # no options of its own


def run(config: Config, args: argparse.Namespace) -> int:
    store = open_store(config.storage)
    return run_forever(config, store, job_runner(config, store))
