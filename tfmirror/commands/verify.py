"""`tfmirror verify`: re-hash the store, check devpi, prove installs (and repair)."""

from __future__ import annotations

import argparse

from mirror.core.config import Config
from mirror.core.storage import open_store
from tfmirror.commands.common import EXIT_FAILED, EXIT_OK, job_runner, wait_flag
from tfmirror.services import services_for_sync
from verify.run import run_verify


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repair",
        action="store_true",
        help="re-fetch bad blobs (quarantining corrupt ones), re-push to devpi",
    )
    parser.add_argument("--deep", action="store_true", help="also load every model with TensorFlow")
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="resolve only; skip the real install into a throwaway venv",
    )
    wait_flag(parser)


def run(config: Config, args: argparse.Namespace) -> int:
    store = open_store(config.storage)
    with job_runner(config, store).hold("verify", wait=args.wait):
        report = run_verify(
            config,
            store,
            services_for_sync,
            fix=args.repair,
            deep=args.deep,
            install=not args.no_install,
        )
    print(report.render(args.repair), end="")  # each problem once, where its check is
    print("verify: clean" if report.ok else f"verify: {len(report.problems)} problems remain")
    return EXIT_OK if report.ok else EXIT_FAILED
