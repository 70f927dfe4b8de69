"""Lag: the newest upstream version of each requirement, recorded after each PyPI sync.

"Newest" is what the mirror could take: a final release the requirement's own pin
allows, with a file some target's Python can install (numpy 2.5, which requires Python
3.12, is not newer for a 3.11 fleet; `requests==2.32.3` is not behind 2.34). The newest
release of all is kept beside it, for the page to mention."""

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
    doc: dict[str, Any] | None, requirement: Requirement, pythons: tuple[str, ...]
) -> str:
    """The newest final release the pin allows with a file one of `pythons` can install
    ("" if none); yanked files do not count."""
    best: Version | None = None
    wanted = [Version(p) for p in pythons]
    for entry in (doc or {}).get("files", []):
        version = _file_version(str(entry.get("filename", "")))
        if version is None or version.is_prerelease or entry.get("yanked"):
            continue
        if not requirement.specifier.contains(version):
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


def record_lag(
    store: BlobStore,
    pages: ProjectPages,
    requirements: tuple[str, ...],
    pythons: tuple[str, ...] = (),
) -> None:
    newest, release = {}, {}
    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        name = canonicalize_name(requirement.name)
        doc = pages.get(name)
        newest[name] = newest_installable(doc, requirement, pythons)
        release[name] = newest_version(doc)
    doc = {
        "checked_at": utcnow(),
        "upstream": scrub_url(pages.upstream),
        "newest": newest,
        "newest_release": release,
    }
    fence(JOB)  # what the page shows is the current leader's view of upstream
    store.put(LAG_STATE, json.dumps(doc, indent=1).encode())


def read_lag(store: BlobStore) -> dict[str, object]:
    data = store.get(LAG_STATE)
    return {} if data is None else dict(json.loads(data))
