"""What upstream takes back: files it no longer lists, and PEP 792 project status.

PyPI has no feed of removals: a file pulled for malware simply leaves its project's
page. Each sync re-reads the page of every mirrored project (for yanks already) and
quarantines (mirror.core.quarantine) each mirrored file the page no longer lists
(`[pypi] on_upstream_removal = "quarantine"`, or `"keep"`), and a whole project upstream
marks `quarantined`. When upstream lists the file again, or lifts the status, the
rule the sync made is lifted too; an operator's own rules are never touched here.
`archived` and `deprecated` are passed on as the fleet index's own `project-status`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from packaging.utils import canonicalize_name

from mirror.core.errors import UsageError
from mirror.core.quarantine import (
    QuarantineRule,
    add_rules,
    as_change,
    new_rule,
    read_quarantine,
    remove_rule,
)
from mirror.core.storage import BlobStore
from mirror.pypi.resolve import Wheel

PROJECT_STATUS = "state/pypi/project-status.json"  # archived/deprecated projects, for pages
UPSTREAM = "upstream"  # the source of the rules this module makes
PASSED_ON = ("archived", "deprecated")


def page_status(doc: Mapping[str, Any] | None) -> tuple[str, str]:
    """PEP 792's (status, reason) from a PEP 691 page; ("active", "") when it says none."""
    raw = (doc or {}).get("project-status")
    if not isinstance(raw, Mapping):
        return "active", ""
    status = raw.get("status")
    reason = raw.get("reason")
    return (
        status if isinstance(status, str) and status else "active",
        reason if isinstance(reason, str) else "",
    )


@dataclass
class UpstreamWord:
    rules: list[QuarantineRule] = field(default_factory=list)  # what upstream's pages call for
    checked: set[str] = field(default_factory=set)  # projects whose page was read
    statuses: dict[str, dict[str, str]] = field(default_factory=dict)  # archived, deprecated


def read_upstream(
    files: Iterable[Wheel],
    pages: Mapping[str, Mapping[str, Any] | None],
    removals: bool,
    actor: str,
) -> UpstreamWord:
    """The rules upstream's pages call for, for these mirrored files. `pages`: each
    project's page as read this sync (None: not readable, so nothing is concluded)."""
    word = UpstreamWord()
    by_project: dict[str, list[Wheel]] = {}
    for wheel in files:
        if wheel.url and wheel.built_from is None:  # built here: not upstream's to take back
            by_project.setdefault(canonicalize_name(wheel.project), []).append(wheel)
    for project, wheels in sorted(by_project.items()):
        doc = pages.get(project)
        if doc is None:
            continue
        word.checked.add(project)
        status, reason = page_status(doc)
        if status == "quarantined":
            why = f"upstream marks the project quarantined{': ' + reason if reason else ''}"
            blobs = tuple(sorted({w.sha256 for w in wheels}))
            word.rules.append(new_rule(project, why, actor, source=UPSTREAM, blobs=blobs))
            continue
        if status in PASSED_ON:
            word.statuses[project] = {"status": status, "reason": reason}
        if not removals:
            continue
        listed = {str(e.get("filename")) for e in doc.get("files", [])}
        for wheel in sorted(wheels, key=lambda w: w.filename):
            if wheel.filename in listed:
                continue
            why = "upstream no longer lists it (removed)"
            try:
                rule = new_rule(wheel.filename, why, actor, source=UPSTREAM, blobs=(wheel.sha256,))
            except UsageError:
                continue  # no file name a rule can match: not one the mirror holds
            word.rules.append(rule)
    return word


def apply_upstream(store: BlobStore, word: UpstreamWord) -> list[dict[str, Any]]:
    """Put the rules in force, lift the sync's own rules upstream no longer calls for
    (for the projects whose page was read), record the statuses; returns the journal's
    changes."""
    changes = [as_change(r, "quarantined") for r in add_rules(store, word.rules)]
    wanted = {(r.spec, r.model) for r in word.rules}
    for rule in read_quarantine(store).rules:
        if rule.source != UPSTREAM or rule.project not in word.checked:
            continue
        if (rule.spec, rule.model) not in wanted:
            lifted = remove_rule(store, rule.spec, rule.model)
            if lifted is not None:
                changes.append(as_change(lifted, "released"))
    old = read_statuses(store)
    current = {p: s for p, s in old.items() if p not in word.checked} | word.statuses
    if current != old:
        store.put(PROJECT_STATUS, json.dumps(current, indent=1, sort_keys=True).encode())
        for project in sorted(current.keys() | old.keys()):
            if current.get(project) != old.get(project):
                after = current.get(project, {"status": "active"})
                changes.append({"event": "project status", "project": project, **after})
    return changes


def read_statuses(store: BlobStore) -> dict[str, dict[str, str]]:
    raw = store.get(PROJECT_STATUS)
    if raw is None:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
