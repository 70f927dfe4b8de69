"""Refuses a closure that needs a quarantined file (mirror.core.quarantine), rules read
as they stand after upstream's word: the closure is not resolved around it (the operator,
or upstream, pulled what it needs), so the environment keeps its last closure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mirror.core.config import PypiConfig
from mirror.core.quarantine import Quarantine, read_quarantine
from mirror.pypi.closure_checks.check import Finding, SyncView, Verdict
from mirror.pypi.resolve import Wheel


class Quarantined:
    def __init__(self, pypi: PypiConfig) -> None:
        self.quarantine = Quarantine()

    def prepare(self, view: SyncView) -> list[dict[str, Any]]:
        self.quarantine = read_quarantine(view.store)
        return []

    def review(self, slot: str, files: Sequence[Wheel]) -> list[Finding]:
        return [
            Finding(Verdict.REFUSE, f"{w.filename} is quarantined ({rule.reason})")
            for w in files
            if (rule := self.quarantine.file_rule(w.project, w.version, w.filename))
        ]
