"""Lag: the newest upstream version of each requirement, recorded after each PyPI sync."""

from __future__ import annotations

import json
import re
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from mirror.core.runs import utcnow
from mirror.core.storage import BlobStore
from mirror.core.upstream import ProjectPages

LAG_STATE = "state/lag.json"
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


def record_lag(store: BlobStore, pages: ProjectPages, requirements: tuple[str, ...]) -> None:
    newest = {}
    for requirement in requirements:
        name = canonicalize_name(Requirement(requirement).name)
        newest[name] = newest_version(pages.get(name))
    doc = {"checked_at": utcnow(), "upstream": pages.upstream, "newest": newest}
    store.put(LAG_STATE, json.dumps(doc, indent=1).encode())


def read_lag(store: BlobStore) -> dict[str, object]:
    data = store.get(LAG_STATE)
    return {} if data is None else dict(json.loads(data))
