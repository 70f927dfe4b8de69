"""Advisories as a source of the avoidance loop (mirror.pypi.avoidance): a release a
blocking advisory covers (mirror.advisories.policy) is kept out, with every version of
its project upstream's page lists that the same policy blocks, so one more resolve, not
one per version. A failure names the advisories and their fixed versions."""

from __future__ import annotations

from collections.abc import Sequence

from mirror.advisories.matching import Finding
from mirror.advisories.policy import Screen, why_blocked
from mirror.core.config import Environment
from mirror.core.quarantine import filename_facts
from mirror.core.upstream import ProjectPages
from mirror.pypi.avoidance import Refused
from mirror.pypi.resolve import Wheel


def _upstream_versions(pages: ProjectPages, project: str) -> set[str]:
    page = pages.get(project) or {}
    versions = set()
    for entry in page.get("files", []):
        facts = filename_facts(str(entry.get("filename", "")))
        if facts is not None:
            versions.add(facts[1])
    return versions


def _refused(finding: Finding) -> Refused:
    why = why_blocked(finding)
    journal = {"event": "left for an advisory", "advisory": finding.advisory.id, "reason": why}
    return Refused(finding.project, finding.version, f"advisory {why}", journal)


class Advisories:
    """The releases `screen` blocks in an environment."""

    def __init__(self, screen: Screen) -> None:
        self.screen = screen

    def refused(self, env: Environment, wheels: Sequence[Wheel]) -> list[Refused]:
        found = self.screen.blocked(env.name, {(w.project, w.version) for w in wheels})
        return [_refused(f) for f in found]

    def also(self, env: Environment, found: list[Refused], pages: ProjectPages) -> set[str]:
        pins = set()
        for project in {f.project for f in found}:
            for version in _upstream_versions(pages, project):
                if self.screen.blocked(env.name, [(project, version)]):
                    pins.add(f"{project}!={version}")
        return pins
