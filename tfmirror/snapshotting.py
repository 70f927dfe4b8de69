"""Taking snapshots (mirror.core.snapshots): by hand (`tfmirror snapshot create`) and on
the schedule (`[schedule] snapshot`, dated names, the oldest scheduled ones beyond
`snapshot_keep` deleted). Here, at the root, because a snapshot reads both sides'
manifests (bundle.contents), and every create and delete is journaled."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from bundle.contents import read_manifests, referenced
from mirror.core.config import Config
from mirror.core.errors import UsageError
from mirror.core.journal import Journal, actor_for
from mirror.core.runs import RunRecord, utcnow
from mirror.core.snapshots import (
    Snapshot,
    delete_snapshot,
    load_snapshot,
    read_promotion,
    save_snapshot,
    snapshot_names,
)
from mirror.core.storage import BlobStore

log = logging.getLogger("tfmirror.snapshot")

AUTO = "auto-"


def take_snapshot(store: BlobStore, name: str, actor: str, note: str = "") -> Snapshot:
    """Hold every committed manifest as it is now; refused if the name is taken."""
    manifests = read_manifests(store)
    snap = Snapshot(
        name,
        utcnow(),
        actor,
        note,
        {k: v.decode("utf-8", "surrogateescape") for k, v in manifests.items()},
        sorted(referenced(manifests)),
    )
    if not save_snapshot(store, snap):
        raise UsageError(f"snapshot {name!r} exists; snapshots never change: pick another name")
    change = {"event": "snapshot created", "snapshot": name, "blobs": len(snap.blobs)}
    Journal(store).record([change], actor, note or f"snapshot {name}")
    return snap


def drop_snapshot(store: BlobStore, name: str, actor: str, reason: str = "") -> None:
    if read_promotion(store).snapshot == name:
        raise UsageError(
            f"snapshot {name!r} is what the fleet is on: promote another one "
            "(or `tfmirror snapshot promote --live`) first"
        )
    if not delete_snapshot(store, name):
        raise UsageError(f"snapshot {name!r} does not exist (see: tfmirror snapshot list)")
    Journal(store).record([{"event": "snapshot deleted", "snapshot": name}], actor, reason)


def auto_name(store: BlobStore, now: datetime | None = None) -> str:
    """`auto-2026-11-28`; another that day carries the time too (and a count after it)."""
    now = now or datetime.now(UTC)
    taken = set(snapshot_names(store))
    day = f"{AUTO}{now:%Y-%m-%d}"
    name, count = day, 1
    while name in taken:
        count += 1
        name = f"{day}-{now:%H%M%S}" + (f"-{count}" if count > 2 else "")
    return name


def snapshot_job(config: Config, store: BlobStore, trigger: str) -> bool:
    """The scheduled snapshot: take a dated one, then delete the oldest dated ones
    (`auto-...`) beyond `[schedule] snapshot_keep`; never another name, never the
    promoted one."""
    record = RunRecord.begin("snapshot", trigger)
    actor = actor_for(trigger)
    snap = take_snapshot(store, auto_name(store), actor, "scheduled")
    promoted = read_promotion(store).snapshot
    autos = []
    for name in snapshot_names(store):
        held = load_snapshot(store, name) if name.startswith(AUTO) and name != promoted else None
        if held is not None:
            autos.append((held.created, name))
    keep = config.schedule.snapshot_keep
    dropped = [name for _, name in sorted(autos)[: max(0, len(autos) - keep)]]
    for name in dropped:
        drop_snapshot(store, name, actor, f"more than {keep} kept")
    log.info("snapshot %s: %d blobs; deleted %s", snap.name, len(snap.blobs), dropped or "none")
    counts = {"blobs": len(snap.blobs), "deleted": len(dropped)}
    record.finish(store, True, counts, 0, [], {"snapshot": snap.name, "deleted": dropped})
    return True
