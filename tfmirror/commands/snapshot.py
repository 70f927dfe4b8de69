"""`tfmirror snapshot create|list|show|delete|promote`: hold what the mirror offers at
one moment (mirror.core.snapshots), see what the live mirror has beyond it, and put the
fleet on it (a rollback) or back on the live mirror."""

from __future__ import annotations

import argparse
import json
import sys

from hub_cache.contract_moves import contract_moves
from mirror.core.journal import Journal, actor_for
from mirror.core.quarantine import read_quarantine
from mirror.core.runs import utcnow
from mirror.core.snapshots import (
    LIVE,
    FrozenDocuments,
    Promotion,
    check_name,
    load_snapshot,
    read_promotion,
    save_promotion,
    snapshot_names,
)
from mirror.core.storage import BlobStore, DocumentReader
from sync_jobs.holdings import difference, holdings, quarantined_holdings
from tfmirror.commands.common import EXIT_FAILED, EXIT_OK, must_snapshot
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
        "--against",
        metavar="OTHER",
        help=f"another snapshot, or {LIVE} (the default): what differs, and how each model's "
        "contract changes from NAME to it",
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
    promote.add_argument(
        "--accept-contract-change",
        action="store_true",
        help="promote though a model the fleet is on moves to a version whose contract "
        "breaks (the journal records the changes)",
    )


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
        chosen = None if args.live else args.name
        return _promote(store, chosen, actor, args.note, args.accept_contract_change)
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
    other_name = args.against or LIVE
    against = f"snapshot {other_name}" if other_name != LIVE else "the live mirror"
    other_documents = _documents(store, other_name)
    diff = difference(held, holdings(other_documents))
    moves = contract_moves(store, FrozenDocuments(snap), other_documents)
    # Quarantine wins over every snapshot: what it holds that no node gets now.
    withheld = quarantined_holdings(FrozenDocuments(snap), read_quarantine(store))
    if args.json:
        doc = {"name": snap.name, "created": snap.created, "note": snap.note, "holds": held}
        print(
            json.dumps(
                {
                    **doc,
                    "quarantined": withheld,
                    "against": against,
                    **diff.as_json(),
                    "contracts": [m.as_json() for m in moves],
                },
                indent=1,
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
    if moves:
        print(f"model contracts, {snap.name} -> {against}:")
        for move in moves:
            for line in move.lines():
                print(f"  {line}")
    return EXIT_OK


def _documents(store: BlobStore, name: str) -> DocumentReader:
    """The manifests of snapshot `name`, or of the live mirror (`live`)."""
    return store if name == LIVE else FrozenDocuments(must_snapshot(store, name))


def _promote(store: BlobStore, name: str | None, actor: str, note: str, accept: bool) -> int:
    # The fleet's models now, against those it would move to: a version whose contract
    # breaks serving code written against today's is moved to only when accepted.
    current = read_promotion(store).snapshot or LIVE
    target = _documents(store, name or LIVE)
    # A promotion naming a snapshot that is gone (a damaged store) is no reason to refuse
    # the promote that mends it: there is nothing to compare against then.
    held = None if current == LIVE else load_snapshot(store, current)
    fleet = store if current == LIVE else FrozenDocuments(held) if held else None
    moves = contract_moves(store, fleet, target) if fleet is not None else []
    breaks = [m for m in moves if m.breaking]
    if breaks:
        print(f"model contracts, {current} -> {name or LIVE}, breaking:")
        for move in breaks:
            for line in move.lines():
                print(f"  {line}")
        if not accept:
            print(
                f"refused: the fleet would move to a model whose contract breaks; pass "
                f"--accept-contract-change to promote {name or LIVE} anyway",
                file=sys.stderr,
            )
            return EXIT_FAILED
    before = save_promotion(store, Promotion(name or "", utcnow(), actor, note))
    change: dict[str, object] = {
        "event": "snapshot promoted" if name else "live promoted",
        "snapshot": name or "",
        "before": before.snapshot or LIVE,
    }
    if breaks:
        change["accepted_contract_changes"] = [line for m in breaks for line in m.accepted()]
    Journal(store).record([change], actor, note or f"promote {name or LIVE}")
    now = f"snapshot {name}" if name else "the live mirror (it follows every sync)"
    print(f"the fleet's default index and hub paths serve {now}; before: {before.snapshot or LIVE}")
    return EXIT_OK
