"""The pull as a job (`follow`): one run record per pull, whoever starts it (`tfmirror
follow`, `up`'s loop), a refusal a failed run naming what was refused; after a commit,
devpi offers the new files (as after a bundle import) and does what it owes a
quarantine the pull brought."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bundle.runs import Offer, finish_offer
from follow.centre import Centre
from follow.errors import BlobsMissing, FollowRefused
from follow.pull import Pull, kept_line, pull
from mirror.core.config import Config
from mirror.core.errors import DownloadError, UsageError
from mirror.core.follow_status import failed, pulled
from mirror.core.redact import shown
from mirror.core.runs import Failure, JobFn, RunRecord, record_crash, utcnow
from mirror.core.storage import BlobStore

JOB = "follow"
log = logging.getLogger("tfmirror.follow")

# devpi's part, given the config and store: offer what the manifests list; purge what a
# followed quarantine takes away (where devpi runs; one started later does it first).
OfferFor = Callable[[Config, BlobStore], Offer]
Settle = Callable[[Config, BlobStore], object]


def follow_recorded(
    config: Config, store: BlobStore, trigger: str, offer: Offer, settle: Settle
) -> tuple[Pull, int, list[Failure]]:
    follow = config.follow
    if follow is None:
        raise UsageError("this mirror follows no centre: add [follow] url to its config")
    record = RunRecord.begin(JOB, trigger)
    try:
        done = pull(store, follow, Centre(follow), trigger)
    except (FollowRefused, DownloadError) as exc:
        _failed(store, follow.url, exc)
        failure = Failure("centre", follow.url, str(exc))
        record.finish(store, False, {}, 0, [failure.as_json()], {"centre": follow.url})
        raise
    except Exception as exc:
        record_crash(store, JOB, trigger, exc)
        raise
    pulled(store, follow.url, done.seq, utcnow())
    held, failures = finish_offer(store, offer)
    if done.quarantine_changed:
        settle(config, store)
    counts = {
        "entries": done.entries,
        "documents": done.documents,
        "manifests": done.manifests,
        "new_blobs": done.new_blobs,
        "devpi_new": held,
    }
    extra = {
        "centre": follow.url,
        "centre_head": done.seq,
        "unchanged": done.unchanged,
        "snapshots_deleted": done.snapshots_deleted,
        "snapshots_kept": done.snapshots_kept,
    }
    errors = [f.as_json() for f in failures]
    record.finish(store, not failures, counts, done.bytes, errors, extra)
    return done, held, failures


def _failed(store: BlobStore, url: str, exc: FollowRefused | DownloadError) -> None:
    """The site's view after a failed pull: unreachable (no answer, or not the one
    asked for) or refused, with what a pull cut short still lacked."""
    missing = (exc.blobs, exc.size) if isinstance(exc, BlobsMissing) else (0, 0)
    failed(
        store,
        url,
        utcnow(),
        shown(str(exc), 300),
        unreachable=isinstance(exc, DownloadError),
        centre_seq=exc.centre_seq if isinstance(exc, BlobsMissing) else None,
        missing=missing,
    )


def register(jobs: dict[str, JobFn], offer_for: OfferFor, settle: Settle) -> None:
    def follow_job(config: Config, store: BlobStore, trigger: str) -> bool:
        if config.follow is None:
            return True  # a mirror of its own: nothing to follow
        try:
            done, _, failures = follow_recorded(
                config, store, trigger, offer_for(config, store), settle
            )
        except (FollowRefused, DownloadError) as exc:
            log.warning("follow: %s", exc)
            return False
        log.info("follow: %s", done.summary())
        for name in done.snapshots_kept:
            log.warning("follow: %s", kept_line(name))
        return not failures

    jobs[JOB] = follow_job
