"""Lag: the newest upstream version of each requirement, recorded after each PyPI sync."""

from __future__ import annotations

import json
import re

import requests
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from mirror.manifest import utcnow
from mirror.storage import BlobStore

LAG_STATE = "state/lag.json"
PEP691 = "application/vnd.pypi.simple.v1+json"
_WHEEL_VERSION = re.compile(r"^[^-]+-([^-]+)-")


def newest_version(upstream: str, project: str, timeout: float = 20) -> str:
    """The newest final release the upstream index lists for `project` ("" if unknown)."""
    answer = requests.get(f"{upstream}{project}/", headers={"Accept": PEP691}, timeout=timeout)
    if answer.status_code != 200:
        return ""
    doc = answer.json()
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


def record_lag(store: BlobStore, upstream: str, requirements: tuple[str, ...]) -> None:
    newest = {}
    for requirement in requirements:
        name = canonicalize_name(Requirement(requirement).name)
        try:
            newest[name] = newest_version(upstream, name)
        except (requests.RequestException, ValueError):
            newest[name] = ""
    doc = {"checked_at": utcnow(), "upstream": upstream, "newest": newest}
    store.put(LAG_STATE, json.dumps(doc, indent=1).encode())


def read_lag(store: BlobStore) -> dict[str, object]:
    data = store.get(LAG_STATE)
    return {} if data is None else dict(json.loads(data))
