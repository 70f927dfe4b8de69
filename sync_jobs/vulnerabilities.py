"""The status page's "Known vulnerabilities": each environment's committed closure
against the advisory database in force, with what its policy does about each finding
(mirror.advisories.policy): reported, waived until a day, or blocked (a blocked one is
shown where a closure still holds it: its target failed and keeps its last closure)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from mirror.advisories.policy import Screen
from mirror.core.config import Config
from mirror.core.storage import BlobStore
from mirror.pypi.manifest import Manifest


@dataclass(frozen=True)
class KnownVulnerability:
    id: str
    project: str
    version: str
    severity: str  # low, medium, high, critical, unknown
    score: float | None
    fixed_in: list[str]
    waived_until: str | None  # the day a waiver in force runs out
    action: str  # "reported", "waived" or "blocked"


def known_vulnerabilities(
    config: Config, store: BlobStore, manifests: Iterable[Manifest]
) -> dict[str, list[KnownVulnerability]]:
    """By environment, worst first; empty with no database."""
    screen = Screen.load(store, config, time.time())
    if screen is None:
        return {}
    releases: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for manifest in manifests:
        releases[manifest.environment].update((w.project, w.version) for w in manifest.files)
    found: dict[str, list[KnownVulnerability]] = {}
    for env, held in sorted(releases.items()):
        policy = screen.policies.get(env)
        rows = []
        for f in screen.matcher.match(held):
            waiver = policy.waiver(f) if policy is not None else None
            blocked = policy.blocks(f) if policy is not None else False
            rows.append(
                KnownVulnerability(
                    f.advisory.id,
                    f.project,
                    f.version,
                    f.severity.label,
                    f.advisory.score,
                    list(f.fixed_in),
                    waiver.until.isoformat() if waiver is not None else None,
                    "blocked" if blocked else "waived" if waiver is not None else "reported",
                )
            )
        found[env] = rows
    return found
