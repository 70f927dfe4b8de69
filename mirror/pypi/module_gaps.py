"""Modules a closure's projects import that the closure itself may not hold.

A project can import a module it does not declare, trusting it to be there: tensorflow-hub
0.16.1 imports `pkg_resources`, which setuptools 82 removed, and a venv from `uv venv`,
or `python -m venv` on 3.12+, has no setuptools at all. The closure installs and the
node fails at import. Each known case is named here with its fix, so the sync warns
when an environment's closure has the gap and a failed import proof says what to add.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version


@dataclass(frozen=True)
class ModuleGap:
    module: str  # what is imported
    importers: tuple[str, ...]  # projects known to import it without declaring it
    provider: str  # the project that gives it
    gives_it: SpecifierSet  # its releases that still do
    constraint: str  # what to add to the environment's constraints

    def missing_in(self, closure: Mapping[str, str]) -> str | None:
        """Which importer the closure holds without a provider that gives the module."""
        importer = next((p for p in self.importers if p in closure), None)
        if importer is None:
            return None
        held = closure.get(self.provider)
        try:
            if held is not None and Version(held) in self.gives_it:
                return None
        except InvalidVersion:
            pass
        return importer

    def fix(self, environment: str, importer: str) -> str:
        return (
            f'add "{self.constraint}" to [pypi.environments.{environment}] constraints '
            f"(and to its requirements, for nodes whose venvs have no {self.provider}): "
            f"{importer} imports {self.module}, which {self.provider} "
            f"{_removed(self.gives_it)} no longer has"
        )


def _removed(gives_it: SpecifierSet) -> str:
    bounds = [s.version for s in gives_it if s.operator == "<"]
    return bounds[0] if bounds else "now"


KNOWN = (
    ModuleGap(
        "pkg_resources", ("tensorflow-hub",), "setuptools", SpecifierSet("<82"), "setuptools<82"
    ),
)


def gaps(environment: str, files: Iterable[tuple[str, str]]) -> list[str]:
    """One warning per known gap in a closure given as (project, version) pairs."""
    closure = {str(canonicalize_name(p)): v for p, v in files}
    out = []
    for gap in KNOWN:
        importer = gap.missing_in(closure)
        if importer is not None:
            out.append(
                f"{importer} imports {gap.module}, which this closure lacks: "
                f"{gap.fix(environment, importer)}"
            )
    return out


def fix_for_import_error(environment: str, error: str, projects: Iterable[str]) -> str | None:
    """The fix for a failed import a known gap explains, or None."""
    held = {str(canonicalize_name(p)) for p in projects}
    for gap in KNOWN:
        if f"No module named '{gap.module}'" in error:
            importer = next((p for p in gap.importers if p in held), gap.importers[0])
            return gap.fix(environment, importer)
    return None
