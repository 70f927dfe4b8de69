"""`tfmirror sync pypi|hub|advisories|all`: one sync now, with a progress bar."""

from __future__ import annotations

import argparse
import sys

from hub_cache.hub_sync import ModelStatus
from tfmirror.commands.common import EXIT_FAILED, EXIT_OK, wait_flag
from tfmirror.parts import MirrorParts
from tfmirror.progress import TerminalProgress


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("side", choices=["pypi", "hub", "advisories", "all"], help="what to sync")
    parser.add_argument(
        "--no-devpi", action="store_true", help="store and commit only; leave devpi as it is"
    )
    wait_flag(parser)


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    config, runner = parts.config, parts.runner
    codes = [EXIT_OK]
    if args.side in ("pypi", "all") and not config.pypi.syncs:
        print(f"pypi: {config.pypi.why_no_sync}; nothing to sync")
    elif args.side in ("pypi", "all"):
        codes.append(
            runner.run("pypi", work=lambda: _sync_pypi(parts, args.no_devpi), wait=args.wait)
        )
    if args.side in ("hub", "all"):
        codes.append(runner.run("hub", work=lambda: _sync_hub(parts), wait=args.wait))
    if args.side == "advisories" and config.advisories is None:
        print("advisories: no [advisories] source configured; nothing to sync")
    elif args.side == "advisories" or (args.side == "all" and config.advisories is not None):
        codes.append(runner.run("advisories", work=lambda: _sync_advisories(parts), wait=args.wait))
    return max(codes)


def _sync_pypi(parts: MirrorParts, no_devpi: bool) -> int:
    report = parts.sync_pypi(TerminalProgress(), devpi=not no_devpi)
    for failure in report.failures:
        print(f"FAILED {failure}", file=sys.stderr)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


def _sync_hub(parts: MirrorParts) -> int:
    report = parts.sync_hub()
    for outcome in report.outcomes:
        if outcome.status is ModelStatus.FAILED:
            print(f"FAILED {outcome.handle}: {outcome.reason} ({outcome.url})", file=sys.stderr)
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


def _sync_advisories(parts: MirrorParts) -> int:
    report = parts.sync_advisories()
    for refused in report.skipped:
        print(f"refused record {refused}", file=sys.stderr)
    if report.failure is not None:
        print(f"FAILED {report.failure}", file=sys.stderr)
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED
