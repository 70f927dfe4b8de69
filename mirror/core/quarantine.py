"""Quarantine: files and models the mirror holds but must not offer.

An operator pulls a release now (a CVE, a broken build) and puts it back later; the
sync quarantines what upstream removed or marked quarantined (PEP 792). A quarantined
file is gone from every index page and its URL answers 410 on every path a node can
use (the fronts refuse it, devpi's copy is purged so nginx no longer finds it in
devpi's serverdir); its blob stays in the store for forensics (gc keeps it while the
rule stands). The rules live in one store document, changed by conditional writes.

A rule's spec: a project (`tensorflow`), a release (`tensorflow==2.18.0`), a file name
(`tensorflow-2.18.0-cp311-...whl`), or with --model a model handle.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from mirror.core.errors import UsageError
from mirror.core.runs import utcnow
from mirror.core.storage import BlobStore, update_document

QUARANTINE = "state/quarantine.json"
_FILE_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2")


@dataclass(frozen=True)
class QuarantineRule:
    spec: str  # as given: project, project==version, a file name, or a model handle
    reason: str
    actor: str
    at: str
    model: bool = False  # the spec is a model handle
    source: str = "operator"  # or "upstream": a removal or PEP 792 status the sync saw
    devpi_purged: bool = False  # devpi's copies of the project are gone
    # The blobs it covered when put in force: kept by gc for forensics until it is
    # lifted (and its grace passes), though no manifest lists them any more.
    blobs: tuple[str, ...] = ()

    @property
    def project(self) -> str | None:
        """The PyPI project the rule is about (None for a model's)."""
        if self.model:
            return None
        if self.spec.endswith(_FILE_SUFFIXES):
            facts = filename_facts(self.spec)
            return canonicalize_name(facts[0]) if facts else None
        return canonicalize_name(Requirement(self.spec).name)

    def matches_file(self, project: str, version: str, filename: str) -> bool:
        if self.model:
            return False
        if self.spec.endswith(_FILE_SUFFIXES):
            return self.spec == filename
        wanted = Requirement(self.spec)
        if canonicalize_name(wanted.name) != canonicalize_name(project):
            return False
        if not wanted.specifier:
            return True
        try:
            return wanted.specifier.contains(Version(version), prereleases=True)
        except InvalidVersion:
            return False

    def matches_model(self, handle: str, path: str) -> bool:
        return self.model and self.spec.rstrip("/") in (handle.rstrip("/"), path.strip("/"))


def check_spec(spec: str, model: bool) -> str:
    """The spec as a rule keeps it; a UsageError saying what to give instead."""
    spec = spec.strip()
    if not spec:
        raise UsageError("quarantine: give a project, project==version, a file name or --model")
    if model or spec.endswith(_FILE_SUFFIXES):
        if "/" in spec and not model:
            raise UsageError(f"quarantine: {spec!r} is a path; give the file's name alone")
        return spec
    try:
        req = Requirement(spec)
    except InvalidRequirement:
        raise UsageError(
            f"quarantine: {spec!r} is not a project, a project==version or a file name "
            "(e.g. tensorflow==2.18.0)"
        ) from None
    if req.extras or req.marker or req.url:
        raise UsageError(f"quarantine: {spec!r}: give a project and versions only")
    return spec


@dataclass(frozen=True)
class Quarantine:
    """The rules in force when it was read."""

    rules: tuple[QuarantineRule, ...] = ()
    # Projects released while devpi was not running: devpi may still hold a page that
    # leaves their files out, so it re-reads them when tfmirror next starts it.
    devpi_refresh: tuple[str, ...] = ()

    def file_rule(self, project: str, version: str, filename: str) -> QuarantineRule | None:
        return next((r for r in self.rules if r.matches_file(project, version, filename)), None)

    def rule_for_file(self, filename: str) -> QuarantineRule | None:
        """The rule covering a wheel or sdist known by its file name alone."""
        facts = filename_facts(filename)
        return self.file_rule(*facts, filename) if facts is not None else None

    def model_rule(self, handle: str, path: str) -> QuarantineRule | None:
        return next((r for r in self.rules if r.matches_model(handle, path)), None)

    def blobs(self) -> set[str]:
        return {sha for r in self.rules for sha in r.blobs}

    def unpurged(self) -> set[str]:
        """Projects whose copies devpi may still hold."""
        return {p for r in self.rules if (p := r.project) is not None and not r.devpi_purged}


def filename_facts(filename: str) -> tuple[str, str] | None:
    """(project, version) of a wheel's or sdist's file name."""
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return str(name), str(version)


def _parse(raw: bytes | None) -> list[QuarantineRule]:
    return list(_parse_all(raw).rules)


def _parse_all(raw: bytes | None) -> Quarantine:
    if not raw:
        return Quarantine()
    try:
        doc = json.loads(raw)
        rows = doc.get("rules", [])
        rules = [QuarantineRule(**{**row, "blobs": tuple(row.get("blobs", ()))}) for row in rows]
        refresh = tuple(str(p) for p in doc.get("devpi_refresh", []))
        return Quarantine(tuple(rules), refresh)
    except (ValueError, TypeError, AttributeError):
        return Quarantine()  # unreadable: nothing can be matched; `quarantine list` says so


def _dump(rules: Iterable[QuarantineRule], refresh: Iterable[str] = ()) -> bytes:
    doc: dict[str, Any] = {"rules": [asdict(r) for r in rules]}
    if refresh:
        doc["devpi_refresh"] = sorted(set(refresh))
    return json.dumps(doc, indent=1).encode()


def _refresh_of(raw: bytes | None) -> tuple[str, ...]:
    return _parse_all(raw).devpi_refresh


def read_quarantine(store: BlobStore) -> Quarantine:
    return _parse_all(store.get(QUARANTINE))


def add_rules(store: BlobStore, rules: list[QuarantineRule]) -> list[QuarantineRule]:
    """Put `rules` in force (replacing any with the same spec); returns the ones that
    are new or changed."""
    added: list[QuarantineRule] = []

    def change(raw: bytes | None) -> bytes | None:
        current = {(r.spec, r.model): r for r in _parse(raw)}
        added.clear()
        for rule in rules:
            old = current.get((rule.spec, rule.model))
            if old is None or (old.reason, old.source) != (rule.reason, rule.source):
                current[(rule.spec, rule.model)] = rule
                added.append(rule)
        return _dump(current.values(), _refresh_of(raw)) if added else None

    update_document(store, QUARANTINE, change)
    return added


def remove_rule(store: BlobStore, spec: str, model: bool) -> QuarantineRule | None:
    """Lift the rule with this spec; returns it, or None if there was none. Its project
    is noted for devpi to re-read, until `devpi_settled` says it has."""
    removed: list[QuarantineRule] = []

    def change(raw: bytes | None) -> bytes | None:
        rules = _parse(raw)
        removed[:] = [r for r in rules if (r.spec, r.model) == (spec, model)]
        if not removed:
            return None
        refresh = {*_refresh_of(raw), *(p for r in removed if (p := r.project) is not None)}
        return _dump((r for r in rules if (r.spec, r.model) != (spec, model)), refresh)

    update_document(store, QUARANTINE, change)
    return removed[0] if removed else None


def adopt_rules(
    store: BlobStore, rules: list[QuarantineRule]
) -> tuple[list[QuarantineRule], list[QuarantineRule]]:
    """Another mirror's rules (a followed centre's) become this one's, whole: what this
    side's devpi already purged stays marked so, every other rule waits for this side's
    own purge, and the projects of rules lifted are noted for devpi to re-read. Returns
    the rules put in force and those lifted."""
    added: list[QuarantineRule] = []
    lifted: list[QuarantineRule] = []

    def change(raw: bytes | None) -> bytes | None:
        held = {(r.spec, r.model): r for r in _parse(raw)}
        wanted = {(r.spec, r.model) for r in rules}
        added[:] = [r for r in rules if (r.spec, r.model) not in held]
        lifted[:] = [r for key, r in held.items() if key not in wanted]
        kept = [
            replace(
                r,
                devpi_purged=(mine := held.get((r.spec, r.model))) is not None
                and mine.devpi_purged,
            )
            for r in rules
        ]
        refresh = {*_refresh_of(raw), *(p for r in lifted if (p := r.project) is not None)}
        new = _dump(kept, refresh)
        return None if new == raw else new

    update_document(store, QUARANTINE, change)
    return added, lifted


def parse_rules(raw: bytes) -> list[QuarantineRule]:
    """The rules of a quarantine document another mirror sent; ValueError if it is not
    one (an unreadable document must not read as "no rules": that would lift them all)."""
    try:
        doc = json.loads(raw)
        rows = doc["rules"]
        if not isinstance(rows, list):
            raise TypeError("rules is not a list")
        return [QuarantineRule(**{**row, "blobs": tuple(row.get("blobs", ()))}) for row in rows]
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a quarantine document ({type(exc).__name__})") from None


def mark_purged(store: BlobStore, projects: set[str], refreshed: Iterable[str] = ()) -> None:
    """Note that devpi's copies of these projects are gone, and that it re-read the
    pages of `refreshed`."""

    def change(raw: bytes | None) -> bytes | None:
        rules = _parse(raw)
        marked = [
            replace(r, devpi_purged=True) if r.project in projects and not r.devpi_purged else r
            for r in rules
        ]
        before = _refresh_of(raw)
        refresh = [p for p in before if p not in {*refreshed, *projects}]
        return _dump(marked, refresh) if (marked, refresh) != (rules, list(before)) else None

    update_document(store, QUARANTINE, change)


def new_rule(
    spec: str,
    reason: str,
    actor: str,
    model: bool = False,
    source: str = "operator",
    blobs: tuple[str, ...] = (),
) -> QuarantineRule:
    spec = check_spec(spec, model)
    return QuarantineRule(spec, reason, actor, utcnow(), model, source, blobs=blobs)


def as_change(rule: QuarantineRule, event: str) -> dict[str, Any]:
    """The journal's record of a rule put in force or lifted."""
    change: dict[str, Any] = {"event": event, "spec": rule.spec, "reason": rule.reason}
    if rule.model:
        change["model"] = rule.spec
    else:
        change["project"] = rule.project
    if rule.source != "operator":
        change["source"] = rule.source
    return change
