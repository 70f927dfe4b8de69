"""Which advisories affect which (project, version): OSV's evaluation of ECOSYSTEM
ranges (events sorted by version; `introduced` opens, `fixed` closes before it,
`last_affected` closes after it; "0" is before every version) and explicit `versions`,
with PEP 440 versions and normalised names. The records are indexed by project once, so
each file of a closure costs a lookup and its own project's few records."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from mirror.advisories.records import Advisory, Affected, Event, Record, Severity

ORDER = {"introduced": 0, "fixed": 1, "last_affected": 2}  # at one version, as OSV sorts


@dataclass(frozen=True)
class Finding:
    """An advisory affecting one release."""

    project: str
    version: str
    advisory: Advisory
    entry: Affected  # the advisory's entry for this project that matched

    @property
    def severity(self) -> Severity:
        return self.advisory.severity

    @property
    def fixed_in(self) -> tuple[str, ...]:
        """The fixed versions the matched entry names (every branch's)."""
        return tuple(sorted(set(self.entry.fixed), key=Version))


@lru_cache(maxsize=65536)
def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


ZERO = Version("0")


def _sort_key(event: Event) -> tuple[bool, Version, int]:
    return (event.version != "0", _version(event.version) or ZERO, ORDER[event.kind])


def _in_range(version: Version, events: tuple[Event, ...]) -> bool:
    """Walk the events in version order: each one `version` has passed (reached, for
    introduced and fixed; gone beyond, for last_affected) opens or closes the range."""
    affected = False
    for event in sorted(events, key=_sort_key):
        bound = None if event.version == "0" else _version(event.version)
        if bound is None:
            passed = event.version == "0"
        elif event.kind == "last_affected":
            passed = version > bound
        else:
            passed = version >= bound
        if passed:
            affected = event.kind == "introduced"
    return affected


def affects(entry: Affected, version: Version) -> bool:
    if any(_version(v) == version for v in entry.versions):
        return True
    return any(_in_range(version, rng) for rng in entry.ranges)


# The entries the records hold for one project (a canonical name).
Entries = Callable[[str], Sequence[tuple[Advisory, Affected]]]


class Matcher:
    """Matching, given each project's entries (the stored records decode them lazily)."""

    def __init__(self, entries: Entries) -> None:
        self._entries = entries

    @classmethod
    def of(cls, records: Iterable[Record]) -> Matcher:
        """Over records in memory, indexed by project."""
        by_project: dict[str, list[tuple[Advisory, Affected]]] = defaultdict(list)
        for record in records:
            for entry in record.affected:
                by_project[entry.project].append((record.advisory, entry))
        return cls(lambda project: by_project.get(project, ()))

    def affecting(self, project: str, version: str) -> list[Finding]:
        name = canonicalize_name(project)
        candidates = self._entries(name)
        parsed = _version(version)
        if not candidates or parsed is None:
            return []
        seen: dict[str, Finding] = {}
        for advisory, entry in candidates:
            if advisory.id not in seen and affects(entry, parsed):
                seen[advisory.id] = Finding(name, version, advisory, entry)
        return list(seen.values())

    def match(self, releases: Iterable[tuple[str, str]]) -> list[Finding]:
        """Every advisory affecting each distinct (project, version), worst first."""
        found: list[Finding] = []
        for project, version in sorted(set(releases)):
            found.extend(self.affecting(project, version))
        return sorted(found, key=lambda f: (-f.severity, f.project, f.version, f.advisory.id))
