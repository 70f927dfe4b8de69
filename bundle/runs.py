"""Bundle exports and imports as the status page shows them: each one is a run record
under runs/bundle/ ("action" says which), and a refused bundle is a failed run with
its reason, so the inner side's page says why nothing new arrived."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bundle.errors import BlobsMissing, BundleError
from bundle.export import ExportedBundle, export
from bundle.importer import (
    Imported,
    InnerCheck,
    import_bundle,
    mark_offered,
    needs_offer,
    recover,
)
from mirror.core.runs import BUNDLE_JOB as JOB
from mirror.core.runs import Failure, RunRecord, record_crash
from mirror.core.storage import BlobStore

# devpi offers what the manifests list: files newly held, and what failed.
Offer = Callable[[], tuple[int, list[Failure]]]


def _refused(record: RunRecord, store: BlobStore, action: str, name: str, exc: Exception) -> None:
    """A refused bundle is a failed run with its reason; any other error, a crash record
    (with its traceback, as every job's). The caller raises the error on."""
    if not isinstance(exc, BundleError):
        record_crash(store, JOB, action, exc)
        return
    failure = Failure(name, "", str(exc))
    record.finish(store, False, {}, 0, [failure.as_json()], {"action": action})


def export_recorded(
    store: BlobStore,
    key: Ed25519PrivateKey,
    out: Path,
    since: str | None,
    full: bool,
    max_part_size: int | None,
) -> ExportedBundle:
    record = RunRecord.begin(JOB, "export")
    try:
        done = export(store, key, out, since, full, max_part_size)
    except Exception as exc:
        _refused(record, store, "export", out.name, exc)
        raise
    counts = {"blobs": done.blobs, "parts": done.parts}
    extra = {"action": "export", "bundle": done.id, "follows": done.follows}
    record.finish(store, True, counts, done.bytes, [], extra)
    return done


def import_recorded(
    store: BlobStore,
    folder: Path,
    trusted: Ed25519PublicKey,
    offer: Offer,
    allow_rollback: bool = False,
    inner_check: InnerCheck | None = None,
) -> tuple[Imported, int, list[Failure]]:
    """Import, then have devpi offer the files; the run fails if either does."""
    record = RunRecord.begin(JOB, "import")
    try:
        done = import_bundle(store, folder, trusted, allow_rollback, inner_check)
    except Exception as exc:
        _refused(record, store, "import", folder.name, exc)
        raise
    held, failures = finish_offer(store, offer)
    counts = {"manifests": done.manifests, "new_blobs": done.new_blobs, "devpi_new": held}
    extra = {"action": "import", "bundle": done.id, "follows": done.follows}
    record.finish(store, not failures, counts, done.bytes, [f.as_json() for f in failures], extra)
    return done, held, failures


def finish_offer(store: BlobStore, offer: Offer) -> tuple[int, list[Failure]]:
    """devpi's offer of the last import, unless it was already made."""
    if not needs_offer(store):
        return 0, []
    held, failures = offer()
    if not failures:
        mark_offered(store)
    return held, failures


def resume(store: BlobStore, offer: Offer) -> tuple[str | None, list[Failure]]:
    """What a crash left of an import, finished: the commit, then devpi's offer. One
    that cannot be finished (its blobs are missing) is a failure saying which bundle to
    import again; what was served is served on."""
    unfinished: list[Failure] = []
    try:
        finished = recover(store)
    except BlobsMissing as exc:
        finished, unfinished = None, [Failure(f"bundle {exc.bundle}", "", str(exc))]
    _, failures = finish_offer(store, offer)
    return finished, unfinished + failures
