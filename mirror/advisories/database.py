"""The advisory database as the mirror keeps it: the export as it came (a blob, what a
bundle will carry), the records parsed from it (a second blob, compact JSON, so `audit`
reads in a tenth of a second what took the sync seconds to parse and score), and
`advisories/current.json` naming both: the one document a refused export never
replaces."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from mirror.advisories.errors import NoDatabase
from mirror.advisories.records import Advisory, Affected, Event, Severity
from mirror.core.errors import BlobNotFound
from mirror.core.storage import BlobStore

CURRENT = "advisories/current.json"
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


def read_current(store: BlobStore) -> Current | None:
    data = store.get(CURRENT)
    return None if data is None else Current.from_bytes(data)


def database_blobs(store: BlobStore) -> set[str]:
    """The blobs of the database in force: gc keeps them, as it keeps what manifests list."""
    current = read_current(store)
    return set() if current is None else {current.archive_sha256, current.records_sha256}


def _event_docs(affected: Affected) -> list[list[list[str]]]:
    return [[[e.kind, e.version] for e in rng] for rng in affected.ranges]


def records_bytes(advisories: Iterable[Advisory]) -> bytes:
    docs = [
        [
            a.id,
            list(a.aliases),
            a.modified,
            a.summary,
            int(a.severity),
            a.score,
            [[f.project, _event_docs(f), list(f.versions)] for f in a.affected],
        ]
        for a in advisories
    ]
    return json.dumps({"format": FORMAT, "advisories": docs}, separators=(",", ":")).encode()


def _advisory(doc: list[Any]) -> Advisory:
    ident, aliases, modified, summary, severity, score, affected = doc
    return Advisory(
        ident,
        tuple(aliases),
        modified,
        summary,
        Severity(severity),
        score,
        tuple(
            Affected(
                project,
                tuple(tuple(Event(kind, version) for kind, version in rng) for rng in ranges),
                tuple(versions),
            )
            for project, ranges, versions in affected
        ),
    )


def parse_records(data: bytes) -> list[Advisory]:
    return [_advisory(doc) for doc in json.loads(data)["advisories"]]


def load_advisories(store: BlobStore) -> tuple[Current, list[Advisory]]:
    """The database in force, its records checked against their sha256."""
    current = read_current(store)
    if current is None:
        raise NoDatabase("no advisory database synced yet")
    try:
        with store.open_blob(current.records_sha256) as f:
            data = f.read()
    except BlobNotFound as exc:
        raise NoDatabase(f"the advisory records blob is missing ({exc})") from None
    if hashlib.sha256(data).hexdigest() != current.records_sha256:
        raise NoDatabase(f"the advisory records blob {current.records_sha256[:12]} is corrupt")
    return current, parse_records(data)
