"""One OSV record (schema 1.x) as the mirror keeps it: what matching needs, checked on
the way in. Only PyPI packages and ECOSYSTEM ranges are kept (GIT and SEMVER ranges
describe other things); a record whose PyPI ranges cannot be read is refused, naming why.
Severity is scored here, once per database, from the CVSS vector with the `cvss`
library; a `MAL-` record (a malicious release) is critical whatever it says."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from cvss import CVSS2, CVSS3, CVSS4, CVSSError
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from mirror.advisories.errors import RecordRefused

ECOSYSTEM = "PyPI"


class Severity(IntEnum):
    """Ordered, so a threshold is a comparison. UNKNOWN: the record scores nothing."""

    UNKNOWN = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def named(cls, text: str) -> Severity:
        # GitHub's database_specific says MODERATE where CVSS says MEDIUM.
        word = {"MODERATE": "MEDIUM", "NONE": "UNKNOWN"}.get(text.upper(), text.upper())
        return cls[word]


@dataclass(frozen=True)
class Event:
    kind: str  # "introduced", "fixed" or "last_affected"
    version: str  # "0" for introduced: every version


@dataclass(frozen=True)
class Affected:
    project: str  # canonical name
    ranges: tuple[tuple[Event, ...], ...]  # each ECOSYSTEM range's events, as listed
    versions: tuple[str, ...]  # the explicit list

    @property
    def fixed(self) -> tuple[str, ...]:
        return tuple(e.version for r in self.ranges for e in r if e.kind == "fixed")


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    modified: str
    summary: str
    severity: Severity
    score: float | None  # the CVSS base score, where a vector gives one
    vector: str = ""  # the CVSS vector that score came from (a database before it: none)


@dataclass(frozen=True)
class Record:
    """A parsed record: the advisory, and the PyPI releases it names."""

    advisory: Advisory
    affected: tuple[Affected, ...]


def _str(doc: dict[str, Any], name: str, where: str, required: bool = False) -> str:
    value = doc.get(name, "")
    if not isinstance(value, str) or (required and not value):
        raise RecordRefused(f"{where}: {name!r} must be a string")
    return value


def _list(doc: dict[str, Any], name: str, where: str) -> list[Any]:
    value = doc.get(name, [])
    if not isinstance(value, list):
        raise RecordRefused(f"{where}: {name!r} must be a list")
    return value


def _version(text: Any, where: str) -> str:
    if not isinstance(text, str):
        raise RecordRefused(f"{where}: a range event's version must be a string")
    if text == "0":
        return text
    try:
        Version(text)
    except InvalidVersion:
        raise RecordRefused(f"{where}: {text[:80]!r} is not a PEP 440 version") from None
    return text


def _events(rng: dict[str, Any], where: str) -> tuple[Event, ...]:
    events = []
    for event in _list(rng, "events", where):
        if not isinstance(event, dict) or len(event) != 1:
            raise RecordRefused(f"{where}: a range event must hold one of introduced/fixed/...")
        ((kind, version),) = event.items()
        if kind not in ("introduced", "fixed", "last_affected", "limit"):
            raise RecordRefused(f"{where}: unknown range event {kind[:40]!r}")
        if kind != "limit":  # limit bounds a GIT range's walk; nothing to an ECOSYSTEM one
            events.append(Event(kind, _version(version, where)))
    return tuple(events)


def _valid_versions(listed: list[Any]) -> tuple[str, ...]:
    """The listed versions PEP 440 can read: PyPI kept some from before it (`0.1dev-r12`),
    which no installer picks, so they are left out rather than the record refused."""
    kept = []
    for text in listed:
        try:
            if isinstance(text, str):
                Version(text)
                kept.append(text)
        except InvalidVersion:
            continue
    return tuple(kept)


def _affected(entry: Any, where: str) -> Affected | None:
    if not isinstance(entry, dict):
        raise RecordRefused(f"{where}: an 'affected' entry must be an object")
    package = entry.get("package")
    if not isinstance(package, dict):
        raise RecordRefused(f"{where}: an 'affected' entry has no package")
    if package.get("ecosystem") != ECOSYSTEM:
        return None
    name = _str(package, "name", where, required=True)
    ranges = []
    for rng in _list(entry, "ranges", where):
        if not isinstance(rng, dict):
            raise RecordRefused(f"{where}: a range must be an object")
        if rng.get("type") == "ECOSYSTEM":
            ranges.append(_events(rng, f"{where} ({name})"))
    versions = _valid_versions(_list(entry, "versions", where))
    return Affected(canonicalize_name(name), tuple(ranges), versions)


def _scored(vector: str) -> tuple[float, Severity, str] | None:
    try:
        if vector.startswith("CVSS:4"):
            v4 = CVSS4(vector)
            return float(v4.base_score), Severity.named(v4.severity), vector
        if vector.startswith("CVSS:3"):
            v3 = CVSS3(vector)
            return float(v3.scores()[0]), Severity.named(v3.severities()[0]), vector
        v2 = CVSS2(vector)
        return float(v2.scores()[0]), Severity.named(v2.severities()[0]), vector
    except (CVSSError, KeyError, ValueError):
        return None


def _severity(
    doc: dict[str, Any], record_id: str, where: str
) -> tuple[Severity, float | None, str]:
    """The severity, and the highest CVSS score and its vector where the record has one."""
    best: tuple[float, Severity, str] | None = None
    for entry in _list(doc, "severity", where):
        if isinstance(entry, dict) and isinstance(entry.get("score"), str):
            scored = _scored(entry["score"])
            if scored is not None and (best is None or scored[0] > best[0]):
                best = scored
    if record_id.startswith("MAL-"):
        return Severity.CRITICAL, best[0] if best else None, best[2] if best else ""
    if best is not None:
        return best[1], best[0], best[2]
    specific = doc.get("database_specific")
    named = specific.get("severity") if isinstance(specific, dict) else None
    if isinstance(named, str) and named.upper() in {*Severity.__members__, "MODERATE"}:
        return Severity.named(named), None, ""
    return Severity.UNKNOWN, None, ""


def parse_record(doc: Any, where: str) -> Record | None:
    """The record, None when it is withdrawn or names no PyPI package; RecordRefused
    (naming `where`, its member) when it is not an OSV record."""
    if not isinstance(doc, dict):
        raise RecordRefused(f"{where}: not a JSON object")
    record_id = _str(doc, "id", where, required=True)
    where = f"{where} ({record_id[:80]})"
    if doc.get("withdrawn"):
        return None
    affected = tuple(a for e in _list(doc, "affected", where) if (a := _affected(e, where)))
    if not affected:
        return None
    severity, score, vector = _severity(doc, record_id, where)
    aliases = tuple(a for a in _list(doc, "aliases", where) if isinstance(a, str))
    advisory = Advisory(
        record_id,
        aliases,
        _str(doc, "modified", where),
        _str(doc, "summary", where)[:300],
        severity,
        score,
        vector,
    )
    return Record(advisory, affected)
