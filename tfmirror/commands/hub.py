"""`tfmirror hub prefetch|import|check|export-serving|contract`: fill a TFHUB_CACHE_DIR
or KAGGLEHUB_CACHE from the mirror, add a model by hand, check models against
environments, export them for TF Serving, show a model's contract."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hub_cache.errors import PrefetchError
from hub_cache.hub_sync import ModelStatus
from hub_cache.importer import import_model
from hub_cache.limits import caps
from hub_cache.prefetch import prefetch, prefetch_to
from mirror.core.errors import UsageError
from mirror.core.handles import handle_path
from mirror.core.sizes import human_bytes
from mirror.core.snapshots import check_name
from tfmirror.commands.common import EXIT_FAILED, EXIT_OK, wait_flag
from tfmirror.commands.model_contract import contract_arguments, run_contract
from tfmirror.commands.model_fit import (
    check_arguments,
    export_arguments,
    run_check,
    run_export,
)
from tfmirror.parts import MirrorParts


def arguments(parser: argparse.ArgumentParser) -> None:
    hub_sub = parser.add_subparsers(dest="hub_command", required=True, metavar="ACTION")
    prefetch = hub_sub.add_parser("prefetch", help="fill a TFHUB_CACHE_DIR from the mirror")
    prefetch.add_argument("handles", nargs="+", metavar="HANDLE")
    where = prefetch.add_mutually_exclusive_group(required=True)
    where.add_argument("--cache-dir", metavar="DIR", help="a TFHUB_CACHE_DIR (tensorflow_hub)")
    where.add_argument(
        "--to",
        metavar="DIR",
        help="write each model plainly (a .tflite file, a folder) for devices and web servers",
    )
    where.add_argument(
        "--kagglehub-cache",
        metavar="DIR",
        help="a KAGGLEHUB_CACHE (kagglehub); handles as owner/model/framework/variation/version",
    )
    prefetch.add_argument("--mirror", metavar="URL", help="the mirror's web front (default: [web])")
    prefetch.add_argument(
        "--snapshot", metavar="NAME", help="the models as a snapshot holds them (/hub/@NAME/)"
    )
    prefetch.add_argument(
        "--env",
        metavar="NAME",
        help="refuse a model the mirror found this environment's runtime cannot load",
    )
    check_arguments(
        hub_sub.add_parser("check", help="which model loads in which environment's runtime")
    )
    export_arguments(
        hub_sub.add_parser("export-serving", help="write a TF Serving model repository")
    )
    contract_arguments(
        hub_sub.add_parser(
            "contract", help="the signatures a model takes and gives, and what changed"
        )
    )
    imp = hub_sub.add_parser(
        "import", help="add a model from a SavedModel folder or tarball, or a .tflite file"
    )
    imp.add_argument("path", metavar="PATH")
    imp.add_argument("--handle", required=True, metavar="HANDLE")
    imp.add_argument(
        "--license", default="", metavar="NAME", help="its licence, e.g. Apache-2.0 (SPDX id)"
    )
    wait_flag(imp)


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    config = parts.config
    if args.hub_command == "check":
        return run_check(parts, args)
    if args.hub_command == "export-serving":
        return run_export(parts, args)
    if args.hub_command == "contract":
        return run_contract(parts, args)
    if args.hub_command == "import":
        try:
            handle_path(args.handle)
        except ValueError as exc:
            raise UsageError(f"--handle: {exc}") from None
        source = Path(args.path)
        if not source.exists():
            raise UsageError(f"{source}: no such file or folder")
        if not (source.is_dir() or source.is_file()):
            raise UsageError(f"{source}: not a regular file or a folder")
        store = parts.store
        outcome = parts.runner.run(
            "hub",
            work=lambda: import_model(
                store, source, args.handle, config.hub, parts.gate_for(config, store), args.license
            ),
            wait=args.wait,
        )
        if outcome.status is ModelStatus.FAILED:
            print(f"FAILED {outcome.handle}: {outcome.reason}", file=sys.stderr)
            return EXIT_FAILED
        print(f"{outcome.handle}: {outcome.status} ({human_bytes(outcome.bytes)})")
        return EXIT_OK
    mirror = args.mirror or config.web.base_url
    if args.snapshot:
        check_name(args.snapshot)  # it goes into a URL: a name, nothing else
    code = EXIT_OK
    for handle in args.handles:
        try:
            if args.to:
                done = prefetch_to(
                    handle,
                    Path(args.to),
                    mirror,
                    caps(config.hub),
                    snapshot=args.snapshot,
                    environment=args.env,
                )
                print(f"{handle}: {done.status} -> {done.folder}")
                continue
            cache = Path(args.kagglehub_cache or args.cache_dir)
            kagglehub = args.kagglehub_cache is not None
            done = prefetch(
                handle,
                cache,
                mirror,
                caps(config.hub),
                kagglehub=kagglehub,
                snapshot=args.snapshot,
                environment=args.env,
            )
            print(f"{handle}: {done.status} -> {done.folder}")
        except (PrefetchError, ValueError) as exc:
            print(f"FAILED {exc}", file=sys.stderr)
            code = EXIT_FAILED
    return code
