"""`tfmirror snapshot create|list|show|delete|promote`: hold what the mirror offers at
one moment (mirror.core.snapshots), see what the live mirror has beyond it, and put the
fleet on it (a rollback) or back on the live mirror."""

from __future__ import annotations

import argparse
import json

from mirror.core.journal import Journal, actor_for
from mirror.core.quarantine import read_quarantine
from mirror.core.runs import utcnow
from mirror.core.snapshots import (
    LIVE,
    FrozenDocuments,
    Promotion,
    check_name,
    save_promotion,
    snapshot_names,
)
from mirror.core.storage import BlobStore
from sync_jobs.holdings import difference, holdings, quarantined_holdings
from tfmirror.commands.common import EXIT_OK, must_snapshot
from tfmirror.parts import MirrorParts
from tfmirror.snapshotting import drop_snapshot, take_snapshot


def arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="hold every closure and model as they are now")
    create.add_argument("name")
    create.add_argument("--note", default="", help="why (kept with it and in the journal)")
    actions.add_parser("list", help="the snapshots, oldest first")
    show = actions.add_parser("show", help="what a snapshot holds, and how it differs")
    show.add_argument("name")
    show.add_argument(
        "--against", metavar="OTHER", help="another snapshot (default: the live mirror)"
    )
    show.add_argument("--json", action="store_true")
    delete = actions.add_parser("delete", help="drop it (gc then frees what only it held)")
    delete.add_argument("name")
    promote = actions.add_parser(
        "promote", help="serve it at the fleet's default index and hub paths (a rollback)"
    )
    which = promote.add_mutually_exclusive_group(required=True)
    which.add_argument("name", nargs="?")
    which.add_argument(
        "--live", action="store_true", help="follow the syncs again (the live mirror)"
    )
    promote.add_argument("--note", default="", help="why (kept in the journal)")


def run(parts: MirrorParts, args: argparse.Namespace) -> int:
    store = parts.store
    if args.action == "list":
        for name in snapshot_names(store):
            snap = must_snapshot(store, name)
            print(
                f"{snap.name}\t{snap.created}\t{snap.actor}\t{len(snap.blobs)} blobs\t{snap.note}"
            )
        return EXIT_OK
    actor = actor_for("manual")
    if args.action == "promote":
        return _promote(store, None if args.live else args.name, actor, args.note)
    name = check_name(args.name)
    if args.action == "create":
        snap = take_snapshot(store, name, actor, args.note)
        print(f"snapshot {name}: {len(snap.manifests)} manifests, {len(snap.blobs)} blobs")
        return EXIT_OK
    if args.action == "delete":
        drop_snapshot(store, name, actor)
        print(f"snapshot {name} deleted; gc frees the blobs only it held")
        return EXIT_OK
    snap = must_snapshot(store, name)
    held = holdings(FrozenDocuments(snap))
    if args.against:
        other = holdings(FrozenDocuments(must_snapshot(store, args.against)))
        against = f"snapshot {args.against}"
    else:
        other, against = holdings(store), "the live mirror"
    diff = difference(held, other)
    # Quarantine wins over every snapshot: what it holds that no node gets now.
    withheld = quarantined_holdings(FrozenDocuments(snap), read_quarantine(store))
    if args.json:
        doc = {"name": snap.name, "created": snap.created, "note": snap.note, "holds": held}
        print(
            json.dumps(
                {**doc, "quarantined": withheld, "against": against, **diff.as_json()}, indent=1
            )
        )
        return EXIT_OK
    print(
        f"{snap.name}: made {snap.created} by {snap.actor}{': ' + snap.note if snap.note else ''}"
    )
    for what, version in held.items():
        print(f"  {what} {version}")
    for row in withheld:
        print(f"  quarantined: {row} (not served)")
    print(f"{against} against it:")
    for kind, rows in diff.as_json().items():
        for row in rows:
            print(f"  {kind}: {row}")
    if not diff:
        print("  the same")
    return EXIT_OK


def _promote(store: BlobStore, name: str | None, actor: str, note: str) -> int:
    if name is not None:
        must_snapshot(store, name)
    before = save_promotion(store, Promotion(name or "", utcnow(), actor, note))
    change = {
        "event": "snapshot promoted" if name else "live promoted",
        "snapshot": name or "",
        "before": before.snapshot or LIVE,
    }
    Journal(store).record([change], actor, note or f"promote {name or LIVE}")
    now = f"snapshot {name}" if name else "the live mirror (it follows every sync)"
    print(f"the fleet's default index and hub paths serve {now}; before: {before.snapshot or LIVE}")
    return EXIT_OK
