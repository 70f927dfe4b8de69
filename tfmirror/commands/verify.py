"""`tfmirror verify`: re-hash the store, check devpi, prove installs (and repair)."""

from __future__ import annotations

import argparse

from tfmirror.commands.common import EXIT_FAILED, EXIT_OK, wait_flag
from tfmirror.parts import MirrorParts
from verify.run import VerifyReport, run_verify


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repair",
        action="store_true",
        help="re-fetch bad blobs (quarantining corrupt ones), re-push to devpi",
    )
    parser.add_argument(
        "--deep",
        action="store_true",
        help="also load every model in each environment's runtime of its format "
        "(TensorFlow, LiteRT, Keras)",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="resolve only; skip the real install into a throwaway venv",
    )
    wait_flag(parser)


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    def verify() -> VerifyReport:
        return run_verify(
            parts.config,
            parts.store,
            parts.devpi_session,
            parts.runner.keeping_out,
            fix=args.repair,
            deep=args.deep,
            install=not args.no_install,
        )

    report = parts.runner.run("verify", work=verify, wait=args.wait)
    print(report.render(args.repair), end="")  # each problem once, where its check is
    print("verify: clean" if report.ok else f"verify: {len(report.problems)} problems remain")
    return EXIT_OK if report.ok else EXIT_FAILED
