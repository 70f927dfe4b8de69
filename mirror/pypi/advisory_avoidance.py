"""How a closure avoids the releases its environment blocks (mirror.advisories.policy):
the resolver is told, as the cooldown's resolver is, by what it may pick: each blocked
release of a project becomes a `project!=version` constraint (every version of it
upstream's page lists that the same advisories block, so one more resolve, not one per
version), and the closure is resolved again. A newer release may need a project that is
blocked too: a few rounds, each adding what the last one found. When no release meets
the requirements, the target fails naming the advisories and their fixed versions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from packaging.version import InvalidVersion, Version

from mirror.advisories.matching import Finding
from mirror.advisories.policy import Screen, why_blocked
from mirror.core.config import Environment
from mirror.core.quarantine import filename_facts
from mirror.core.upstream import ProjectPages
from mirror.pypi.errors import ResolveError
from mirror.pypi.resolve import Wheel

ROUNDS = 4  # each round can only add projects a newer release newly needs


@dataclass
class Avoided:
    """What a resolve left out because of an advisory."""

    wheels: list[Wheel]
    environment: Environment  # with the constraints the closure was resolved under
    left_out: list[Finding] = field(default_factory=list)


def _upstream_versions(pages: ProjectPages, project: str) -> set[str]:
    page = pages.get(project) or {}
    versions = set()
    for entry in page.get("files", []):
        facts = filename_facts(str(entry.get("filename", "")))
        if facts is not None:
            versions.add(facts[1])
    return versions


def _exclusions(screen: Screen, env: str, found: list[Finding], pages: ProjectPages) -> set[str]:
    """`project!=version` for each blocked release of the projects in `found`."""
    pins = {f"{f.project}!={f.version}" for f in found}
    for project in {f.project for f in found}:
        for version in _upstream_versions(pages, project):
            if screen.blocked(env, [(project, version)]):
                pins.add(f"{project}!={version}")
    return pins


def _normal(pin: str) -> str:
    project, version = pin.split("!=", 1)
    try:
        return f"{project}!={Version(version)}"
    except InvalidVersion:
        return pin


def avoid(
    screen: Screen,
    env: Environment,
    wheels: list[Wheel],
    pages: ProjectPages,
    resolve: Callable[[Environment], list[Wheel]],
) -> Avoided:
    """The closure resolved around every release `env` blocks; ResolveError naming the
    advisories when no release meets the requirements."""
    done = Avoided(wheels, env)
    pins: set[str] = set()
    for _ in range(ROUNDS):
        found = screen.blocked(env.name, {(w.project, w.version) for w in done.wheels})
        if not found:
            return done
        more = {_normal(p) for p in _exclusions(screen, env.name, found, pages)} - pins
        if not more:
            break  # nothing left to exclude: the closure needs what is blocked
        pins |= more
        done.left_out += found
        constrained = replace(env, constraints=(*env.constraints, *sorted(pins)))
        try:
            done.wheels = resolve(constrained)
        except ResolveError:
            raise ResolveError(_no_release(done.left_out)) from None
        done.environment = constrained
    found = screen.blocked(env.name, {(w.project, w.version) for w in done.wheels})
    if found:
        raise ResolveError(_no_release(found))
    return done


def _no_release(found: list[Finding]) -> str:
    named = "; ".join(
        sorted({f"{f.project} {f.version}: advisory {why_blocked(f)}" for f in found})
    )
    return (
        f"no release that meets the requirements escapes the advisories it blocks ({named}); "
        "the last closure stays"
    )
