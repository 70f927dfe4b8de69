"""Refuses a closure holding a file whose licence is outside its environment's policy
([pypi] allowed_licenses / denied_licenses / allow_unknown_license, or the environment's
own): the target fails naming project, version and licence, and keeps serving its last
closure. The resolver is not steered around such releases here (that is block mode's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mirror.core.config import PypiConfig
from mirror.pypi.closure_checks.check import Finding, SyncView, Verdict
from mirror.pypi.package_licenses import outside_policy
from mirror.pypi.resolve import Wheel


class Licenses:
    def __init__(self, pypi: PypiConfig) -> None:
        self.pypi = pypi

    def prepare(self, view: SyncView) -> list[dict[str, Any]]:
        return []

    def review(self, slot: str, files: Sequence[Wheel]) -> list[Finding]:
        policy = self.pypi.license_policy(slot.split("/", 1)[0])
        return [
            Finding(Verdict.REFUSE, f"{w.project} {w.version} ({w.filename}): {why}")
            for w, why in outside_policy(files, policy)
        ]
