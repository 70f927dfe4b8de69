"""Refuses a closure holding a file whose licence is outside its environment's policy
([pypi] allowed_licenses / denied_licenses / allow_unknown_license, or the environment's
own) where its `licenses` mode is "block": the target fails naming project, version and
licence, and keeps serving its last closure. The resolver has already stepped around
such releases (mirror.pypi.licence_avoidance); this catches what it cannot: a wheel's
sdist or build requirements, a licence read only once the file was downloaded. In
"report" nothing is refused: `audit --licenses` and the status page show it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mirror.core.config import PypiConfig
from mirror.pypi.closure_checks.check import Finding, SyncView, Verdict
from mirror.pypi.licence_avoidance import BLOCK
from mirror.pypi.package_licenses import outside_policy
from mirror.pypi.resolve import Wheel


class Licenses:
    def __init__(self, pypi: PypiConfig) -> None:
        self.pypi = pypi

    def prepare(self, view: SyncView) -> list[dict[str, Any]]:
        return []

    def review(self, slot: str, files: Sequence[Wheel]) -> list[Finding]:
        name = slot.split("/", 1)[0]
        env = self.pypi.environment(name)
        if env is not None and env.licenses != BLOCK:
            return []
        policy = self.pypi.license_policy(name)
        return [
            Finding(Verdict.REFUSE, f"{w.project} {w.version} ({w.filename}): {why}")
            for w, why in outside_policy(files, policy)
        ]
