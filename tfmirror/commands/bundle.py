"""`tfmirror bundle keygen|export|import`: carry the mirror across an air gap, signed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bundle.importer import signatures_here
from bundle.keys import keygen, load_private, load_public
from bundle.runs import export_recorded, import_recorded
from mirror.core.sizes import human_bytes
from tfmirror.commands.common import EXIT_OK, SYNCS, report_offer, size_text, wait_flag
from tfmirror.parts import MirrorParts


def arguments(parser: argparse.ArgumentParser) -> None:
    bundle_sub = parser.add_subparsers(dest="bundle_command", required=True, metavar="ACTION")
    keygen = bundle_sub.add_parser("keygen", help="make an ed25519 key pair for bundles")
    keygen.add_argument("--out", required=True, metavar="DIR")
    exp = bundle_sub.add_parser("export", help="write what the inner mirror lacks, signed")
    exp.add_argument("--key", required=True, metavar="KEY", help="the bundle.key to sign with")
    exp.add_argument("-o", "--output", required=True, metavar="DIR", help="a new folder")
    since = exp.add_mutually_exclusive_group()
    since.add_argument("--since", metavar="ID", help="only blobs newer than export ID")
    since.add_argument("--full", action="store_true", help="every blob (a new inner mirror)")
    exp.add_argument("--max-part-size", type=size_text, metavar="SIZE", help="e.g. 4G for FAT32")
    wait_flag(exp)
    bimp = bundle_sub.add_parser("import", help="check a bundle and serve what it brought")
    bimp.add_argument("path", metavar="PATH")
    bimp.add_argument("--trust", required=True, metavar="PUBKEY", help="the outer bundle.pub")
    bimp.add_argument(
        "--allow-rollback",
        action="store_true",
        help="import a bundle made before the last one imported (it rolls the mirror back)",
    )
    wait_flag(bimp)


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    """A refused bundle (BundleError) or an unusable key file (KeyFileError) is the one
    line tfmirror.cli prints for it."""
    if args.bundle_command == "keygen":
        private, public = keygen(Path(args.out))
        print(f"private key (keep it on the outer side): {private}\npublic key: {public}")
        return EXIT_OK
    if args.bundle_command == "export":
        return _bundle_export(parts, args, load_private(Path(args.key)))
    return _bundle_import(parts, args, load_public(Path(args.trust)))


def _bundle_export(parts: MirrorParts, args: argparse.Namespace, key: Any) -> int:
    store, out = parts.store, Path(args.output)
    done = parts.runner.keep_out(
        SYNCS,
        lambda: export_recorded(store, key, out, args.since, args.full, args.max_part_size),
        args.wait,
    )
    follows = f"follows {done.follows}" if done.follows else "full"
    print(
        f"{done.id}\t{follows}; {done.blobs} blobs, {human_bytes(done.bytes)}, {done.parts} parts"
    )
    return EXIT_OK


def _bundle_import(parts: MirrorParts, args: argparse.Namespace, trusted: Any) -> int:
    store, folder = parts.store, Path(args.path)
    done, held, failures = parts.runner.keep_out(
        SYNCS,
        lambda: import_recorded(
            store,
            folder,
            trusted,
            parts.offer_manifests,
            args.allow_rollback,
            signatures_here(parts.config.hub),
        ),
        args.wait,
    )
    if done.again:
        print(f"{done.id} is the last bundle imported here: nothing new to check")
    else:
        print(
            f"imported {done.id}: {done.manifests} manifests, {done.new_blobs} new blobs, "
            f"{human_bytes(done.bytes)} checked"
        )
    if not done.outer_extends:
        print(
            "the outer journal it carries lacks entries an earlier bundle carried, or "
            "rewrote them: `tfmirror history --outer --verify` names the first",
            file=sys.stderr,
        )
    return report_offer(held, failures)
