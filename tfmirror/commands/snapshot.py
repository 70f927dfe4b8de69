"""`tfmirror snapshot create|list|show|delete`: hold what the mirror offers at one
moment (mirror.core.snapshots), and see what the live mirror has beyond it."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping

from bundle.contents import read_manifests, referenced
from hub_cache.models import HUB_MANIFESTS, ModelManifest
from mirror.core.config import Config
from mirror.core.errors import UsageError
from mirror.core.journal import Journal, actor_for
from mirror.core.runs import utcnow
from mirror.core.snapshots import (
    Snapshot,
    check_name,
    delete_snapshot,
    load_snapshot,
    save_snapshot,
    snapshot_names,
)
from mirror.core.storage import BlobStore, open_store
from mirror.pypi.manifest import PYPI_MANIFESTS, Manifest
from tfmirror.commands.common import EXIT_OK


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


def _contents(manifests: Mapping[str, str | bytes]) -> dict[str, str]:
    """What manifests offer, as `project version` per environment/target and
    `model sha256` per model, keyed for a diff."""
    out: dict[str, str] = {}
    for key, text in sorted(manifests.items()):
        data = text.encode() if isinstance(text, str) else text
        if key.startswith(PYPI_MANIFESTS + "/"):
            manifest = Manifest.from_bytes(data)
            for wheel in manifest.files:
                out[f"{manifest.where}: {wheel.project}"] = wheel.version
        elif key.startswith(HUB_MANIFESTS + "/"):
            model = ModelManifest.from_bytes(data)
            out[f"model {model.handle}"] = model.sha256[:16]
    return out


def _diff(before: dict[str, str], after: dict[str, str]) -> dict[str, list[str]]:
    return {
        "added": sorted(f"{k} {after[k]}" for k in after.keys() - before.keys()),
        "removed": sorted(f"{k} {before[k]}" for k in before.keys() - after.keys()),
        "changed": sorted(
            f"{k} {before[k]} -> {after[k]}"
            for k in before.keys() & after.keys()
            if before[k] != after[k]
        ),
    }


def _must(store: BlobStore, name: str) -> Snapshot:
    found = load_snapshot(store, name)
    if found is None:
        raise UsageError(f"snapshot {name!r} does not exist (see: tfmirror snapshot list)")
    return found


def run(config: Config, args: argparse.Namespace) -> int:
    store = open_store(config.storage)
    if args.action == "list":
        for name in snapshot_names(store):
            snap = _must(store, name)
            print(
                f"{snap.name}\t{snap.created}\t{snap.actor}\t{len(snap.blobs)} blobs\t{snap.note}"
            )
        return EXIT_OK
    name = check_name(args.name)
    actor = actor_for("manual")
    if args.action == "create":
        manifests = read_manifests(store)
        snap = Snapshot(
            name,
            utcnow(),
            actor,
            args.note,
            {k: v.decode("utf-8", "surrogateescape") for k, v in manifests.items()},
            sorted(referenced(manifests)),
        )
        if not save_snapshot(store, snap):
            raise UsageError(f"snapshot {name!r} exists; snapshots never change: pick another name")
        change = {"event": "snapshot created", "snapshot": name, "blobs": len(snap.blobs)}
        Journal(store).record([change], actor, args.note or f"snapshot {name}")
        print(f"snapshot {name}: {len(manifests)} manifests, {len(snap.blobs)} blobs")
        return EXIT_OK
    if args.action == "delete":
        if not delete_snapshot(store, name):
            raise UsageError(f"snapshot {name!r} does not exist (see: tfmirror snapshot list)")
        Journal(store).record([{"event": "snapshot deleted", "snapshot": name}], actor)
        print(f"snapshot {name} deleted; gc frees the blobs only it held")
        return EXIT_OK
    snap = _must(store, name)
    held = _contents(snap.manifests)
    if args.against:
        other: dict[str, str] = _contents(_must(store, args.against).manifests)
        against = f"snapshot {args.against}"
    else:
        other = _contents(read_manifests(store))
        against = "the live mirror"
    diff = _diff(held, other)
    if args.json:
        doc = {"name": snap.name, "created": snap.created, "note": snap.note, "holds": held}
        print(json.dumps({**doc, "against": against, **diff}, indent=1))
        return EXIT_OK
    print(
        f"{snap.name}: made {snap.created} by {snap.actor}{': ' + snap.note if snap.note else ''}"
    )
    for what, version in held.items():
        print(f"  {what} {version}")
    print(f"{against} against it:")
    for kind, rows in diff.items():
        for row in rows:
            print(f"  {kind}: {row}")
    if not any(diff.values()):
        print("  the same")
    return EXIT_OK
