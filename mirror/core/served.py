"""Which manifests a request is served from: the live mirror, a snapshot, or what is
promoted. One decision for the index pages (tfmirror.fleet_index) and the models
(hub_cache.routes), so a promote moves both at once."""

from __future__ import annotations

from flask import abort

from mirror.core.context import app_store
from mirror.core.snapshots import LIVE, read_promotion, snapshot_reader
from mirror.core.storage import DocumentReader


def served_source(at: str | None) -> DocumentReader:
    """`at` None is what the fleet is on (the promoted snapshot, else the live mirror),
    "live" the live mirror, else the snapshot of that name (404 when there is none)."""
    store = app_store()
    if at is None:
        promoted = read_promotion(store).snapshot
        if not promoted:
            return store
        reader = snapshot_reader(store, promoted)
        if reader is None:
            # Never the live set instead: that is the drift a promote is there to stop.
            abort(503, description=f"the promoted snapshot {promoted!r} is missing from the store")
        return reader
    if at == LIVE:
        return store
    reader = snapshot_reader(store, at)
    if reader is None:
        abort(404, description=f"no snapshot {at!r} here (tfmirror snapshot list)")
    return reader
