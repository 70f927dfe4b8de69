"""`tfmirror sync pypi|hub|all`: one sync now, with a progress bar."""

from __future__ import annotations

import argparse
import sys

from hub_cache.hub_sync import ModelStatus
from hub_cache.jobs import sync_hub
from mirror.core.config import Config
from mirror.core.storage import BlobStore, open_store
from tfmirror.commands.common import EXIT_FAILED, EXIT_OK, job_runner, wait_flag
from tfmirror.jobs import sync_pypi
from tfmirror.progress import TerminalProgress
from verify.compat import compat_gate


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("side", choices=["pypi", "hub", "all"], help="what to sync")
    parser.add_argument(
        "--no-devpi", action="store_true", help="store and commit only; leave devpi as it is"
    )
    wait_flag(parser)


def run(config: Config, args: argparse.Namespace) -> int:
    store = open_store(config.storage)
    runner = job_runner(config, store)
    codes = [EXIT_OK]
    if args.side in ("pypi", "all") and not config.pypi.syncs:
        print(f"pypi: {config.pypi.why_no_sync}; nothing to sync")
    elif args.side in ("pypi", "all"):
        with runner.hold("pypi", wait=args.wait):
            codes.append(_sync_pypi(config, store, args.no_devpi))
    if args.side in ("hub", "all"):
        with runner.hold("hub", wait=args.wait):
            codes.append(_sync_hub(config, store))
    return max(codes)


def _sync_pypi(config: Config, store: BlobStore, no_devpi: bool) -> int:
    report = sync_pypi(config, store, "manual", TerminalProgress(), devpi=not no_devpi)
    for failure in report.failures:
        print(f"FAILED {failure}", file=sys.stderr)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


def _sync_hub(config: Config, store: BlobStore) -> int:
    report = sync_hub(config, store, "manual", compat_gate)
    for outcome in report.outcomes:
        if outcome.status is ModelStatus.FAILED:
            print(f"FAILED {outcome.handle}: {outcome.reason} ({outcome.url})", file=sys.stderr)
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED
