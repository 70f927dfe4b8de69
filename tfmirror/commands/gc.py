"""`tfmirror gc`: remove blobs no manifest references, past the grace period."""

from __future__ import annotations

import argparse

from tfmirror.commands.common import EXIT_OK, hours_text, wait_flag
from tfmirror.parts import MirrorParts
from verify.gc import GcReport
from verify.jobs import run_gc


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    parser.add_argument(
        "--grace-hours", type=hours_text, metavar="H", help="override [schedule] gc_grace_hours"
    )
    wait_flag(parser)


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    config = parts.config
    hours = config.schedule.gc_grace_hours if args.grace_hours is None else args.grace_hours
    store, runner = parts.store, parts.runner

    def gc() -> GcReport:
        return run_gc(config, store, "manual", runner.keeping_out, hours, args.dry_run)

    report = runner.run("gc", work=gc, wait=args.wait)
    for sha in report.removed:
        print(f"{'would remove' if args.dry_run else 'removed'} {sha}")
    print(report.summary())
    return EXIT_OK
