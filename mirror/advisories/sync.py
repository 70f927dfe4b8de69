"""The advisories job: OSV's export downloaded under the download policy (the hosts a
redirect may reach, a byte cap, a deadline) or copied from a local file, kept as a
blob, every record parsed; then the parsed records as a blob of their own, the
`current` document naming both, one journal entry (the export's sha256 and record
count) and one run record. An export refused whole changes nothing: the last good
database stays in force, and the run record says why."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mirror.advisories.archive import Caps, Parsed, read_archive
from mirror.advisories.database import CURRENT, Current, read_current, records_bytes
from mirror.advisories.errors import ArchiveRefused
from mirror.core.config import Config
from mirror.core.config.advisories import AdvisoriesConfig
from mirror.core.errors import DownloadError, StoreError
from mirror.core.hosts import HostPolicy
from mirror.core.journal import Journal, actor_for
from mirror.core.redact import redact_url
from mirror.core.runs import Failure, JobFn, RunRecord, utcnow
from mirror.core.scratch import scratch_dir
from mirror.core.storage import BlobStore, HashingWriter
from mirror.core.upstream import Fetched, FetchPolicy, copy_local, fetch_verified

log = logging.getLogger("tfmirror.advisories")
JOB = "advisories"


@dataclass
class AdvisoriesReport:
    current: Current | None = None  # the database in force after the run
    changed: bool = False  # a new export became current
    skipped: list[str] = field(default_factory=list)  # records refused, each named
    failure: Failure | None = None  # the export refused, or not had

    @property
    def ok(self) -> bool:
        return self.failure is None

    def summary(self) -> str:
        if self.failure is not None:
            kept = (
                f"; the database of {self.current.fetched_at} stays in force"
                if self.current
                else ""
            )
            return f"advisories: refused: {self.failure.reason}{kept}"
        assert self.current is not None
        verb = "new database" if self.changed else "unchanged"
        return (
            f"advisories: {verb}: {self.current.records} PyPI advisories from "
            f"{self.current.members} records, {len(self.skipped)} refused "
            f"(sha256 {self.current.archive_sha256[:12]})"
        )


def fetch_policy(advisories: AdvisoriesConfig) -> FetchPolicy:
    return FetchPolicy(
        timeout=advisories.timeout,
        retries=advisories.retries,
        max_bytes=advisories.max_mb * 2**20,
        cap_setting="[advisories] max_mb",
        deadline=advisories.deadline,
        hosts=HostPolicy.trusting(
            [advisories.source, *advisories.allow_hosts], "[advisories] allow_hosts"
        ),
    )


def caps(advisories: AdvisoriesConfig) -> Caps:
    return Caps(
        records=advisories.max_records,
        record_bytes=advisories.max_record_kb * 1024,
        total_bytes=advisories.max_uncompressed_mb * 2**20,
    )


@contextmanager
def _local_copy(store: BlobStore, sha256: str) -> Iterator[Path]:
    """The blob as a file zipfile can seek in: itself on disk, a scratch copy from S3."""
    path = store.local_path(sha256)
    if path is not None:
        yield path
        return
    with scratch_dir("advisories-") as folder, store.open_blob(sha256) as source:
        copy = folder / "all.zip"
        with copy.open("wb") as out:
            shutil.copyfileobj(source, out, 1024 * 1024)
        yield copy


def _fetch(advisories: AdvisoriesConfig, store: BlobStore) -> Fetched:
    if advisories.is_url:
        return fetch_verified(store, advisories.source, None, None, fetch_policy(advisories))
    return copy_local(store, Path(advisories.source), advisories.max_mb * 2**20)


def _publish(store: BlobStore, data: bytes) -> str:
    writer = HashingWriter(store.new_blob())
    try:
        writer.write(data)
        return writer.publish()
    except BaseException:
        writer.discard()
        raise


def sync_advisories(config: Config, store: BlobStore, trigger: str) -> AdvisoriesReport:
    """One refresh of the database, however it was started: one wiring, one run record."""
    advisories = config.advisories
    assert advisories is not None, "the job runs only where [advisories] is configured"
    record = RunRecord.begin(JOB, trigger)
    before = read_current(store)
    report = AdvisoriesReport(current=before)
    source = redact_url(advisories.source)
    fetched_bytes = 0
    try:
        fetched = _fetch(advisories, store)
        fetched_bytes = fetched.size
        with _local_copy(store, fetched.sha256) as path, path.open("rb") as f:
            parsed = read_archive(f, fetched.size, caps(advisories))
        report.skipped = parsed.skipped
        report.current, report.changed = _commit(store, fetched, parsed, before, source, trigger)
    except (ArchiveRefused, DownloadError, StoreError, OSError) as exc:
        reason = exc.args[0] if isinstance(exc, ArchiveRefused | DownloadError) else str(exc)
        report.failure = Failure("advisories", source, str(reason))
    for skipped in report.skipped[:20]:
        log.warning("advisory record refused: %s", skipped)
    counts = {
        "records": report.current.records if report.current else 0,
        "refused": len(report.skipped),
        "failed": 0 if report.ok else 1,
    }
    errors = [] if report.failure is None else [report.failure.as_json()]
    errors += [Failure("record", source, why).as_json() for why in report.skipped[:100]]
    record.finish(store, report.ok, counts, fetched_bytes, errors)
    return report


def _commit(
    store: BlobStore,
    fetched: Fetched,
    parsed: Parsed,
    before: Current | None,
    source: str,
    trigger: str,
) -> tuple[Current, bool]:
    if before is not None and before.archive_sha256 == fetched.sha256:
        return before, False  # the same export: nothing to record
    records_sha = _publish(store, records_bytes(parsed.records))
    current = Current(
        archive_sha256=fetched.sha256,
        records_sha256=records_sha,
        records=len(parsed.records),
        members=parsed.members,
        skipped=len(parsed.skipped),
        source=source,
        fetched_at=utcnow(),
    )
    store.put(CURRENT, current.to_bytes())
    change = {
        "event": "advisories updated",
        "sha256": current.archive_sha256,
        "size": fetched.size,
        "records": current.records,
        "members": current.members,
        "refused": current.skipped,
        "source": source,
    }
    if before is not None:
        change["replaces"] = before.archive_sha256
    Journal(store).record([change], actor_for(trigger), "advisories sync")
    return current, True


def advisories_job(config: Config, store: BlobStore, trigger: str) -> bool:
    if config.advisories is None:
        log.info("advisories: no [advisories] source configured; nothing to do")
        return True
    report = sync_advisories(config, store, trigger)
    log.info("%s", report.summary())
    return report.ok


def register(jobs: dict[str, JobFn]) -> None:
    """The advisories side's door: its job."""
    jobs[JOB] = advisories_job
