"""The advisory database as the mirror keeps it: the export as it came (a blob, what a
bundle will carry), the records parsed from it (a second blob, compact JSON, so `audit`
reads in a tenth of a second what took the sync seconds to parse and score), and
`advisories/current.json` naming both: the one document a refused export never
replaces."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from mirror.advisories.errors import NoDatabase
from mirror.advisories.records import Advisory, Affected, Event, Record, Severity
from mirror.core.errors import BlobNotFound
from mirror.core.storage import BlobStore

CURRENT = "advisories/current.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")
FORMAT = 1


@dataclass(frozen=True)
class Current:
    """Which database is in force, and what it held."""

    archive_sha256: str  # the export, as downloaded
    records_sha256: str  # the parsed records
    records: int  # advisories kept (PyPI, not withdrawn)
    members: int  # records in the export
    skipped: int  # records refused, each named in the run record
    source: str
    fetched_at: str

    def to_bytes(self) -> bytes:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=1, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Current:
        doc = json.loads(data)
        doc.pop("format", None)
        return cls(**doc)


def parse_current(data: bytes) -> Current:
    """Another mirror's `advisories/current.json` (a bundle's, a centre's); ValueError
    for one that is not one."""
    try:
        current = Current.from_bytes(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not an advisory database document ({str(exc)[:120]})") from None
    for sha in (current.archive_sha256, current.records_sha256):
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise ValueError(f"names {str(sha)[:80]!r}, which is no sha256")
    return current


def take_database(store: BlobStore, data: bytes, source: str) -> dict[str, Any] | None:
    """Another mirror's database in force here (its blobs stored and checked by then):
    `advisories/current.json` as that mirror wrote it. The journal change to record, as
    a sync records a new database; None when this side holds it already."""
    if store.get(CURRENT) == data:
        return None
    current = parse_current(data)
    store.put(CURRENT, data)
    return {
        "event": "advisories updated",
        "sha256": current.archive_sha256,
        "records": current.records,
        "source": source,
    }


def read_current(store: BlobStore) -> Current | None:
    data = store.get(CURRENT)
    return None if data is None else Current.from_bytes(data)


def database_blobs(store: BlobStore) -> set[str]:
    """The blobs of the database in force: gc keeps them, as it keeps what manifests list."""
    current = read_current(store)
    return set() if current is None else {current.archive_sha256, current.records_sha256}


def _event_docs(affected: Affected) -> list[list[list[str]]]:
    return [[[e.kind, e.version] for e in rng] for rng in affected.ranges]


def records_bytes(records: Iterable[Record]) -> bytes:
    """The records as the store keeps them: the advisories in a list, and their PyPI
    entries grouped by project, so a reader decodes only the projects it asks about."""
    advisories: list[list[Any]] = []
    projects: dict[str, list[list[Any]]] = defaultdict(list)
    for record in records:
        a = record.advisory
        number = len(advisories)
        advisories.append(
            [a.id, list(a.aliases), a.modified, a.summary, int(a.severity), a.score, a.vector]
        )
        for entry in record.affected:
            projects[entry.project].append([number, _event_docs(entry), list(entry.versions)])
    doc = {"format": FORMAT, "advisories": advisories, "projects": projects}
    return json.dumps(doc, separators=(",", ":")).encode()


class StoredRecords:
    """The stored records, each project's decoded when first asked for: an audit of 300
    pins decodes 300 projects' entries, not 20,000 advisories."""

    def __init__(self, data: bytes) -> None:
        doc = json.loads(data)
        self._advisories: list[list[Any]] = doc["advisories"]
        self._projects: dict[str, list[list[Any]]] = doc["projects"]
        self._decoded: dict[int, Advisory] = {}

    def __len__(self) -> int:
        return len(self._advisories)

    def ids(self) -> set[str]:
        return {doc[0] for doc in self._advisories}

    def _advisory(self, number: int) -> Advisory:
        found = self._decoded.get(number)
        if found is None:
            # A database the last release stored has no vector (six fields, not seven).
            ident, aliases, modified, summary, severity, score, *vector = self._advisories[number]
            found = Advisory(
                ident, tuple(aliases), modified, summary, Severity(severity), score, *vector
            )
            self._decoded[number] = found
        return found

    def entries(self, project: str) -> list[tuple[Advisory, Affected]]:
        return [
            (
                self._advisory(number),
                Affected(
                    project,
                    tuple(tuple(Event(kind, version) for kind, version in r) for r in ranges),
                    tuple(versions),
                ),
            )
            for number, ranges, versions in self._projects.get(project, ())
        ]


# The records this process read last, by their sha256: the status page reads them on
# every scrape, and the blob changes once a day at most. Content-addressed, so a new
# database (or another store's) is read afresh; one slot, so one database's memory.
_last: tuple[str, StoredRecords] | None = None
_last_lock = threading.Lock()


def forget_last_read() -> None:
    """The next load reads the records blob again (a bench timing a first read)."""
    global _last
    with _last_lock:
        _last = None


def load_advisories(store: BlobStore) -> tuple[Current, StoredRecords]:
    """The database in force, its records checked against their sha256 when read."""
    global _last
    current = read_current(store)
    if current is None:
        raise NoDatabase("no advisory database synced yet")
    with _last_lock:
        last = _last
    if last is not None and last[0] == current.records_sha256:
        return current, last[1]
    try:
        with store.open_blob(current.records_sha256) as f:
            data = f.read()
    except BlobNotFound as exc:
        raise NoDatabase(f"the advisory records blob is missing ({exc})") from None
    if hashlib.sha256(data).hexdigest() != current.records_sha256:
        raise NoDatabase(f"the advisory records blob {current.records_sha256[:12]} is corrupt")
    records = StoredRecords(data)
    with _last_lock:
        _last = (current.records_sha256, records)
    return current, records
