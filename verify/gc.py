"""Garbage collection: remove the blobs nothing lists (no manifest, no snapshot, no
unfinished bundle import: mirror.core.import_journal) once they are older than the grace
period, which protects an in-flight sync (its blobs are stored before its manifest is
committed, so for a while nothing lists them) and abandoned writes (temp files, S3
multipart uploads). Quarantine is never collected; it is evidence."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from hub_cache.models import load_models
from mirror.advisories.database import database_blobs
from mirror.core.errors import JobBusy
from mirror.core.import_journal import OLD_JOURNAL, unfinished_import_blobs
from mirror.core.lease import KeepingOut, fence
from mirror.core.quarantine import read_quarantine
from mirror.core.sizes import human_bytes
from mirror.core.snapshots import snapshot_blobs
from mirror.core.storage import BlobStore
from mirror.pypi.manifest import load_all
from verify.errors import UnknownPending

WRITERS = ("pypi", "hub")  # the jobs that commit manifests (a bundle import holds both)


@dataclass
class GcReport:
    removed: list[str] = field(default_factory=list)
    kept_young: list[str] = field(default_factory=list)
    referenced: int = 0
    freed_bytes: int = 0
    temporaries: list[str] = field(default_factory=list)  # abandoned writes dropped
    dry_run: bool = False
    postponed: str = ""  # why nothing was deleted this time (a writer was running)

    def summary(self) -> str:
        if self.postponed:
            return f"gc: nothing removed: {self.postponed}; the next gc collects"
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"gc: {verb} {len(self.removed)} unreferenced blobs ({human_bytes(self.freed_bytes)}); "
            f"{len(self.kept_young)} younger than the grace period kept; "
            f"{self.referenced} referenced; {len(self.temporaries)} abandoned writes"
        )


def referenced_shas(store: BlobStore) -> set[str]:
    """Every blob something lists; UnknownPending while that cannot be told."""
    pending = unfinished_import_blobs(store)
    if pending is None:
        raise UnknownPending(
            f"a bundle import the release before began is unfinished ({OLD_JOURNAL}), and "
            "its blobs are listed nowhere yet: `tfmirror up` or the next import finishes it"
        )
    shas = {blob.sha256 for m in load_all(store) for blob in m.blobs()}
    # A quarantined file's bytes stay for forensics until its rule is lifted; a
    # snapshot's, until it is deleted; an interrupted import's, until it is finished.
    models = {sha for m in load_models(store) for sha, _, _ in m.blobs()}
    # The advisory database in force, until another replaces it.
    held = read_quarantine(store).blobs() | snapshot_blobs(store) | database_blobs(store)
    return shas | models | held | pending


def collect(
    store: BlobStore, grace_seconds: float, keeping_out: KeepingOut, dry_run: bool = False
) -> GcReport:
    """Delete what nothing lists, keeping out every job that commits manifests (pypi,
    hub; an import holds both) through the runner's `keeping_out`: no manifest can be
    committed between the reading of the references and the deletes, so a blob a writer
    re-stamps and lists is never deleted under it. While one of them runs, the deletes
    wait for the next gc; each delete is fenced by all the leases (a gc paused past them
    deletes no more)."""
    if dry_run:
        return _collect(store, grace_seconds, GcReport(dry_run=True))
    try:
        with keeping_out(WRITERS):
            return _collect(store, grace_seconds, GcReport())
    except JobBusy as busy:
        return GcReport(postponed=f"{busy}, and may yet list any unreferenced blob")


def _collect(store: BlobStore, grace_seconds: float, report: GcReport) -> GcReport:
    dry_run = report.dry_run
    # Read the manifests first: a blob published after this point is young, so kept.
    try:
        keep = referenced_shas(store)
    except UnknownPending as exc:
        report.postponed = str(exc)
        return report
    now = time.time()
    for sha in list(store.iter_blobs()):
        if sha in keep:
            report.referenced += 1
            continue
        # Its time is read just before the delete: a sync that reuses an unreferenced
        # blob re-stamps it before committing the manifest that will list it.
        mtime = store.blob_mtime(sha)
        if mtime is None:
            continue
        if time.time() - mtime < grace_seconds:
            report.kept_young.append(sha)
            continue
        report.freed_bytes += store.blob_size(sha) or 0
        report.removed.append(sha)
        if not dry_run:
            for job in ("gc", *WRITERS):
                fence(job)  # a gc whose leases went to another replica deletes no more
            store.delete_blob(sha)
    # Writes a crashed sync never published or discarded (a temp file, an S3 multipart
    # upload): past the grace period, no live writer can still own them.
    for ident, started in list(store.iter_temporaries()):
        if now - started >= grace_seconds:
            report.temporaries.append(ident)
            if not dry_run:
                store.drop_temporary(ident)
    return report
