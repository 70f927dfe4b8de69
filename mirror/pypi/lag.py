"""Lag: the newest upstream version of each environment's requirements, recorded after
each PyPI sync.

"Newest" is what that environment could take: a final release its requirement and its
constraints allow, with a file one of its own targets' Pythons can install (numpy 2.5,
which requires Python 3.12, is not newer for a 3.11 environment; `requests==2.32.3` is
not behind 2.34, and an environment held on `tensorflow==2.20.*` is measured against
2.20.x whatever another environment pins). The newest release of all is kept beside
it, per project, for the page to mention.

state/lag.json: {"environments": {env: {requirement: newest}}, "newest_release": ...}.
The previous release's record kept one "newest" per project for every environment; it
is read as not known (the next sync writes this one)."""

from __future__ import annotations

import json
import re
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from mirror.core.config import Environment
from mirror.core.lease import fence
from mirror.core.redact import scrub_url
from mirror.core.runs import utcnow
from mirror.core.storage import BlobStore
from mirror.core.upstream import ProjectPages

LAG_STATE = "state/lag.json"
JOB = "pypi"  # the lease the PyPI sync writes it under
_WHEEL_VERSION = re.compile(r"^[^-]+-([^-]+)-")


def newest_version(doc: dict[str, Any] | None) -> str:
    """The newest final release a project page lists ("" if unknown)."""
    if doc is None:
        return ""
    names = doc.get("versions") or [
        m.group(1) for f in doc.get("files", []) if (m := _WHEEL_VERSION.match(f["filename"]))
    ]
    versions = []
    for name in names:
        try:
            version = Version(name)
        except InvalidVersion:
            continue
        if not version.is_prerelease:
            versions.append(version)
    return str(max(versions)) if versions else ""


def _file_version(filename: str) -> Version | None:
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


def newest_installable(
    doc: dict[str, Any] | None, allowed: SpecifierSet, pythons: tuple[str, ...]
) -> str:
    """The newest final release `allowed` admits with a file one of `pythons` can
    install ("" if none); yanked files do not count."""
    best: Version | None = None
    wanted = [Version(p) for p in pythons]
    for entry in (doc or {}).get("files", []):
        version = _file_version(str(entry.get("filename", "")))
        if version is None or version.is_prerelease or entry.get("yanked"):
            continue
        if not allowed.contains(version):
            continue
        try:
            requires = SpecifierSet(str(entry.get("requires-python") or ""))
        except InvalidSpecifier:
            continue
        if wanted and not any(requires.contains(p, prereleases=True) for p in wanted):
            continue
        if best is None or version > best:
            best = version
    return str(best) if best else ""


def _allowed(requirement: Requirement, constraints: tuple[str, ...]) -> SpecifierSet:
    """What the requirement's pin and the environment's constraints on it both admit."""
    allowed = SpecifierSet(str(requirement.specifier))
    name = canonicalize_name(requirement.name)
    for text in constraints:
        try:
            constraint = Requirement(text)
        except InvalidRequirement:
            continue
        if canonicalize_name(constraint.name) == name:
            allowed &= constraint.specifier
    return allowed


def record_lag(
    store: BlobStore, pages: ProjectPages, environments: tuple[Environment, ...]
) -> None:
    newest: dict[str, dict[str, str]] = {}
    release: dict[str, str] = {}
    for env in environments:
        pythons = tuple(sorted({t.python for t in env.targets}))
        own = newest.setdefault(env.name, {})
        for text in env.requirements:
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            name = canonicalize_name(requirement.name)
            doc = pages.get(name)  # read once: ProjectPages keeps what it read
            own[text] = newest_installable(doc, _allowed(requirement, env.constraints), pythons)
            release[name] = newest_version(doc)
    doc = {
        "checked_at": utcnow(),
        "upstream": scrub_url(pages.upstream),
        "environments": newest,
        "newest_release": release,
    }
    fence(JOB)  # what the page shows is the current leader's view of upstream
    store.put(LAG_STATE, json.dumps(doc, indent=1).encode())


def read_lag(store: BlobStore) -> dict[str, object]:
    data = store.get(LAG_STATE)
    return {} if data is None else dict(json.loads(data))
