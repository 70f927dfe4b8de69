"""Licences as a source of the avoidance loop (mirror.pypi.avoidance): where an
environment's `licenses` mode is "block", a release whose licence is outside its policy
([pypi] allowed_licenses / denied_licenses / allow_unknown_license, or its own) is kept
out, and the closure moves to another release that meets the requirements; when none
does, the target fails naming project, version and licence. Each licence is read from the
METADATA the resolver read (mirror.pypi.closure_resolver.ClosureResolver.license_of):
none is fetched twice, and other releases' are read only when a resolve picks them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from mirror.core.config import Environment, PypiConfig
from mirror.core.licenses import License
from mirror.core.upstream import ProjectPages
from mirror.pypi.avoidance import Refused
from mirror.pypi.package_licenses import outside_policy
from mirror.pypi.resolve import Wheel

BLOCK = "block"


class Licences:
    """The releases whose licence an environment in "block" refuses."""

    def __init__(self, pypi: PypiConfig, license_of: Callable[[Wheel], License]) -> None:
        self.pypi = pypi
        self.license_of = license_of

    def refused(self, env: Environment, wheels: Sequence[Wheel]) -> list[Refused]:
        policy = self.pypi.license_policy(env.name)
        if env.licenses != BLOCK or not policy.applies:
            return []
        licensed = [w if w.license else replace(w, license=self.license_of(w)) for w in wheels]
        return [
            Refused(
                w.project,
                w.version,
                why,
                {"event": "left for its licence", "licence": w.licensed.shown(), "reason": why},
            )
            for w, why in outside_policy(licensed, policy)
        ]

    def also(self, env: Environment, found: list[Refused], pages: ProjectPages) -> set[str]:
        return set()  # another release's licence is known once a resolve picks it
