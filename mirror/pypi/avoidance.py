"""How a closure avoids the releases its environment's policy keeps out (advisories,
licences: each a `Source`), in one loop: after a resolve each source names the releases
of the closure it refuses; each becomes a `project!=version` constraint (a source may add
other releases of the project it knows it refuses too, so one more resolve, not one per
version), and the closure is resolved again, as the cooldown's resolver is told what it
may pick. A newer or older release may need a project that is refused too: a few rounds,
each adding what the last one found. When no release meets the requirements, the target
fails naming each refused release and why (the last closure stays)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from packaging.version import InvalidVersion, Version

from mirror.core.config import Environment
from mirror.core.upstream import ProjectPages
from mirror.pypi.errors import ResolveError
from mirror.pypi.resolve import Role, Wheel

ROUNDS = 4  # each round can only add projects a newer release newly needs


@dataclass(frozen=True)
class Refused:
    """One release a source keeps out of an environment's closure, and why."""

    project: str
    version: str
    why: str  # after "project version: ", e.g. "advisory GHSA-… (high; fixed in 1.2.0)"
    journal: dict[str, Any]  # the journal's fields for it: its "event" and what it names

    def named(self) -> str:
        return f"{self.project} {self.version}: {self.why}"


class Source(Protocol):
    """What keeps releases out of a closure: advisories, licences."""

    def refused(self, env: Environment, wheels: Sequence[Wheel]) -> list[Refused]:
        """The releases of this closure that `env`'s policy keeps out."""
        ...

    def also(self, env: Environment, found: list[Refused], pages: ProjectPages) -> set[str]:
        """`project!=version` for other releases of the projects in `found` this source
        knows it refuses without a resolve (none: each is found when picked)."""
        ...


@dataclass
class Avoided:
    """A closure resolved around what its environment refuses."""

    wheels: list[Wheel]
    environment: Environment  # with the constraints the closure was resolved under
    left_out: list[Refused] = field(default_factory=list)


def refused_by(
    sources: Sequence[Source], env: Environment, wheels: Sequence[Wheel]
) -> list[Refused]:
    """What any source refuses of the closure (its own files: what a built wheel brings
    beside it is no release the resolver picked)."""
    closure = [w for w in wheels if w.role is Role.CLOSURE]
    return [r for source in sources for r in source.refused(env, closure)]


def _normal(pin: str) -> str:
    project, version = pin.split("!=", 1)
    try:
        return f"{project}!={Version(version)}"
    except InvalidVersion:
        return pin


def avoid(
    sources: Sequence[Source],
    env: Environment,
    wheels: list[Wheel],
    pages: ProjectPages,
    resolve: Callable[[Environment], list[Wheel]],
) -> Avoided:
    """The closure resolved around every release the sources refuse in `env`;
    ResolveError naming them when no release meets the requirements."""
    done = Avoided(wheels, env)
    pins: set[str] = set()
    for _ in range(ROUNDS):
        found = refused_by(sources, env, done.wheels)
        if not found:
            return done
        asked = {f"{r.project}!={r.version}" for r in found}
        asked |= {p for source in sources for p in source.also(env, found, pages)}
        more = {_normal(p) for p in asked} - pins
        if not more:
            break  # nothing left to exclude: the closure needs what is refused
        pins |= more
        done.left_out += found
        constrained = replace(env, constraints=(*env.constraints, *sorted(pins)))
        try:
            done.wheels = resolve(constrained)
        except ResolveError:
            raise ResolveError(_no_release(done.left_out)) from None
        done.environment = constrained
    found = refused_by(sources, env, done.wheels)
    if found:
        raise ResolveError(_no_release(found))
    return done


def _no_release(found: list[Refused]) -> str:
    named = "; ".join(sorted({r.named() for r in found}))
    return (
        "no release that meets the requirements escapes what the environment's policy "
        f"keeps out ({named}); the last closure stays"
    )
