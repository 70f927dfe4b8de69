"""Upstream's word on the mirrored files (mirror.pypi.upstream_status): files it no
longer lists and projects it marks quarantined (PEP 792) become quarantine rules, what
it lists again is released. It refuses nothing itself: the rules it writes are what
the Quarantined check, registered after it, refuses by.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from packaging.utils import canonicalize_name

from mirror.core.config import PypiConfig
from mirror.pypi.closure_checks.check import Finding, SyncView
from mirror.pypi.resolve import Wheel
from mirror.pypi.upstream_status import apply_upstream, read_upstream


class UpstreamRemovals:
    def __init__(self, pypi: PypiConfig) -> None:
        self.removals = pypi.on_upstream_removal == "quarantine"

    def prepare(self, view: SyncView) -> list[dict[str, Any]]:
        # A page upstream said is unchanged (304) holds no news: it is not checked again.
        projects = {str(canonicalize_name(w.project)) for w in view.files}
        read: dict[str, Mapping[str, Any] | None] = {
            p: view.pages.get(p) for p in projects if not view.pages.unchanged(p)
        }
        word = read_upstream(view.files, read, self.removals, view.actor)
        if not view.leading():  # a paused run's word is stale: no rule from it
            return []
        return apply_upstream(view.store, word)

    def review(self, slot: str, files: Sequence[Wheel]) -> list[Finding]:
        return []
