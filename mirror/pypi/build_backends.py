"""Build backends every environment's index offers, whatever its requirements. Nodes
install their own projects offline (`pip install .`, pdm, hatch): pip's build isolation
fetches the project's build backend from the index. So `[pypi] build_backends` are
mirrored for every environment and target, as wheels, bounded by the environment's
constraints and pinned to its closure (an environment's index must not offer a second
setuptools beside the one its closure holds). A backend upstream cannot give for a
target is left out and named; the closure is committed all the same."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from mirror.core.config import Environment, Target
from mirror.pypi.errors import ResolveError
from mirror.pypi.resolve import Role, Wheel

# (requirements, target, constraints) -> a wheels-only closure
Resolver = Callable[[tuple[str, ...], Target, tuple[str, ...]], list[Wheel]]


@dataclass
class Backends:
    files: list[Wheel] = field(default_factory=list)  # role BUILD, not in the closure
    missing: list[str] = field(default_factory=list)  # "name: why", one per backend left out


def resolve_backends(
    backends: tuple[str, ...],
    env: Environment,
    target: Target,
    resolve: Resolver,
    closure: list[Wheel],
) -> Backends:
    out = Backends()
    if not backends:
        return out
    pins = tuple(f"{w.project}=={w.version}" for w in closure if w.role is Role.CLOSURE)
    bounds = (*env.constraints, *pins)
    try:
        found = resolve(backends, target, bounds)
    except ResolveError:
        # One at a time, to keep the ones that can be had and name the others.
        found = []
        for backend in backends:
            try:
                found += resolve((backend,), target, bounds)
            except ResolveError as exc:
                out.missing.append(f"{backend}: {exc}")
    have = {w.sha256 for w in closure}
    seen: set[str] = set()
    for wheel in found:
        if wheel.sha256 not in have and wheel.sha256 not in seen:
            seen.add(wheel.sha256)
            out.files.append(replace(wheel, role=Role.BUILD))
    return out
