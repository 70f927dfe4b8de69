"""What a closure check is: something that looks at each resolved closure before it is
committed and keeps it, holds it back or refuses it, with a reason the run record and
the status page show. A check may first read (and, while the run still leads, write)
the shared state it needs, once per sync; what it changes goes into the journal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from mirror.advisories.policy import Screen
from mirror.core.config import PypiConfig
from mirror.core.storage import BlobStore
from mirror.core.upstream import ProjectPages
from mirror.pypi.resolve import Wheel


class Verdict(StrEnum):
    KEEP = "keep"  # no finding is needed for this: a check that finds nothing keeps
    HOLD = "hold"  # not committed this run, the last closure stays: a note, no failure
    REFUSE = "refuse"  # not committed, the last closure stays: a failure naming why


@dataclass(frozen=True)
class Finding:
    verdict: Verdict
    reason: str  # one file or project and why, e.g. "x-1.0-py3-none-any.whl is quarantined (…)"


@dataclass(frozen=True)
class SyncView:
    """What a check is given once per sync, after the closures are resolved and their
    files downloaded and settled, before the first is reviewed."""

    store: BlobStore
    pages: ProjectPages  # upstream's pages, as this sync read them
    files: Sequence[Wheel]  # every file committed before or resolved now
    actor: str  # who the journal says made a change
    leading: Callable[[], bool]  # the run still holds its lease: write shared state only then
    screen: Screen | None = None  # the advisory database and policies; None: no database


class ClosureCheck(Protocol):
    def prepare(self, view: SyncView) -> list[dict[str, Any]]:
        """Read what the reviews need; returns the journal's changes, if it made any."""
        ...

    def review(self, slot: str, files: Sequence[Wheel]) -> list[Finding]:
        """The findings on one closure (`slot`: environment/target); none: keep it."""
        ...


# A check is registered as what makes one for a sync from the [pypi] settings.
CheckFactory = Callable[[PypiConfig], ClosureCheck]
