"""The cooldown: a release is taken only once it has been on upstream for min_age.

Hijacked and malicious releases live on PyPI for hours to days before they are pulled;
a fleet that takes nothing younger than a few days never sees most of them. The rule
is applied where every resolver of the sync reads upstream: the local index's pages
(mirror.pypi.local_index) leave out each file younger than the environment's min_age by
upstream's upload-time, and each file with no upload-time at all (its age cannot be
known). So a closure can only lock what the cooldown lets through, and the fleet's
indexes, which offer the committed closure, never offer a younger file.
`[pypi] cooldown_exempt` lets named releases through at once (an urgent fix).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from mirror.core.quarantine import filename_facts
from mirror.core.storage import BlobStore
from mirror.core.timestamps import utc_moment

COOLDOWN_STATE = "state/pypi/cooldown.json"  # what the last sync held back, for the page


@dataclass(frozen=True)
class Held:
    """A release upstream offers that the cooldown kept out."""

    project: str
    version: str
    uploaded: str | None  # upstream's upload-time; None: upstream gives none
    eligible: str | None  # when it may enter; None: never, without an upload-time

    @property
    def why(self) -> str:
        what = f"{self.project} {self.version} held back by cooldown"
        if self.eligible is None:
            return f"{what}: upstream gives no upload-time"
        return f"{what} until {self.eligible}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Cooldown:
    """One environment's rule for one sync: `now` is the sync's start, so every
    resolve of the sync sees the same cut."""

    min_age: float  # seconds; 0: off
    now: float  # epoch seconds
    exempt: tuple[str, ...] = ()  # PEP 508 strings: "urllib3==2.8.1", "urllib3"

    @property
    def active(self) -> bool:
        return self.min_age > 0

    @property
    def cutoff(self) -> int:
        """Files uploaded after this moment (epoch seconds) are held back."""
        return int(self.now - self.min_age)

    @cached_property
    def _exempt_requirements(self) -> tuple[Requirement, ...]:
        return tuple(Requirement(text) for text in self.exempt)  # parsed once, not per file

    def _exempt(self, project: str, version: Version | None) -> bool:
        for wanted in self._exempt_requirements:
            if canonicalize_name(wanted.name) != project:
                continue
            if version is None:
                return not wanted.specifier
            if wanted.specifier.contains(version, prereleases=True):
                return True
        return False

    def holds(self, project: str, entry: dict[str, Any]) -> Held | None:
        """Why the file a page entry lists is held back, or None if it may enter."""
        if not self.active:
            return None
        uploaded = utc_moment(entry.get("upload-time"))
        if uploaded is not None and uploaded.timestamp() <= self.cutoff:
            return None  # old enough: most files of most pages, decided by their time alone
        filename = str(entry.get("filename", ""))
        facts = filename_facts(filename)
        version = Version(facts[1]) if facts is not None else None
        if self._exempt(project, version):
            return None
        shown = str(version) if version is not None else filename
        if uploaded is None:
            return Held(project, shown, None, None)
        eligible = datetime.fromtimestamp(uploaded.timestamp() + self.min_age, UTC)
        return Held(project, shown, _iso(uploaded), _iso(eligible))


def explain(error: str, held: Iterable[Held]) -> str:
    """A failed resolve's message, with the held-back releases of the projects it names:
    a pin only a too-young release satisfies says when it will be taken."""
    text = error.lower().replace("_", "-")
    named = sorted({h.why for h in held if h.project in text})
    return f"{error}; {'; '.join(named)}" if named else error


def earliest(held: Iterable[Held]) -> float | None:
    """When the first held-back release becomes eligible (epoch seconds)."""
    moments = [m.timestamp() for h in held if (m := utc_moment(h.eligible)) is not None]
    return min(moments) if moments else None


def save_held(store: BlobStore, held: Iterable[Held], at: str) -> None:
    rows = sorted({(h.project, h.version): h for h in held}.values(), key=_order)
    doc = {"at": at, "held": [asdict(h) for h in rows]}
    store.put(COOLDOWN_STATE, json.dumps(doc, indent=1).encode())


def read_held(store: BlobStore) -> list[Held]:
    raw = store.get(COOLDOWN_STATE)
    if raw is None:
        return []
    try:
        return [Held(**row) for row in json.loads(raw).get("held", [])]
    except (ValueError, TypeError, AttributeError):
        return []  # unreadable: the next sync writes a good one


def _order(held: Held) -> tuple[str, str]:
    return (held.project, held.version)
