"""One change of a journal entry (mirror.core.journal) in words, `event: what [where]
(more)`, for the status page's *Recent changes* and `tfmirror history`: both read it
from here, so neither shows an event with nothing after its colon ("snapshot created:")
while the JSON holds the details. What: a model, a quarantine rule, a snapshot, a
bundle, a release, a file, a blob, or a before -> after; where: an environment's target;
more: the rule's reason, what a promotion replaced, a snapshot's size."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LIVE = "@live"  # how the page and `history` name the live mirror (its path, /@live/)


@dataclass(frozen=True)
class ChangeText:
    event: str
    what: str
    where: str = ""
    more: str = ""

    def __str__(self) -> str:
        where = f" [{self.where}]" if self.where else ""
        more = f" ({self.more})" if self.more else ""
        return f"{self.event}: {self.what or '-'}{where}{more}"


def _listed(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return str(value) if value not in (None, "") else "none"


def _snapshot(name: object) -> str:
    return str(name) if name and name != "live" else LIVE


def _what(change: Mapping[str, Any]) -> str:
    event = str(change.get("event", ""))
    if event in ("snapshot promoted", "live promoted"):
        return _snapshot(change.get("snapshot"))
    if event.endswith(" changed") and "before" in change and "after" in change:
        return f"{_listed(change['before'])} -> {_listed(change['after'])}"
    if event == "project status":
        return f"{change.get('project', '')} {change.get('status', '')}".strip()
    # A quarantine rule by its spec (a project, a release, a file name), before the
    # project the rule is about.
    for key in ("spec", "model", "snapshot", "bundle"):
        if change.get(key):
            return str(change[key])
    release = " ".join(str(change[k]) for k in ("project", "version") if change.get(k))
    return release or str(change.get("filename") or change.get("sha256") or "")


def _more(change: Mapping[str, Any]) -> str:
    event = str(change.get("event", ""))
    if change.get("reason"):
        return str(change["reason"])
    if event in ("snapshot promoted", "live promoted") and change.get("before"):
        accepted = "; ".join(str(c) for c in change.get("accepted_contract_changes") or [])
        was = f"was {_snapshot(change['before'])}"
        return f"{was}; accepted contract changes: {accepted}" if accepted else was
    if event == "snapshot created" and isinstance(change.get("blobs"), int):
        return f"{change['blobs']} blobs"
    if event in ("model published", "model replaced") and change.get("after"):
        before = str(change.get("before") or "")[:12]
        moved = f"{before} -> {str(change['after'])[:12]}" if before else str(change["after"])[:12]
        licence = f"; licence {change['license']}" if change.get("license") else ""
        return moved + licence + _contract(change.get("contract")) + _signer(change.get("signer"))
    if event == "bundle imported":
        written, deleted = change.get("written") or [], change.get("deleted") or []
        return f"{len(written)} written, {len(deleted)} deleted"
    return ""


def _contract(check: object) -> str:
    """A version published though it differs from its pinned contract (hub_cache.contracts)."""
    if not isinstance(check, Mapping):
        return ""
    changes = "; ".join(str(c) for c in check.get("changes") or [])
    return f"; contract {check.get('state', '')} vs {check.get('pinned', '')}: {changes}"


def _signer(signer: object) -> str:
    """Who signed a version whose entry requires a signature (hub_cache.signatures)."""
    if not isinstance(signer, Mapping):
        return ""
    return f"; signed by {signer.get('signer', '')} ({signer.get('method', '')})"


def describe(change: Mapping[str, Any]) -> ChangeText:
    return ChangeText(
        str(change.get("event", "")),
        _what(change),
        str(change.get("where") or ""),
        _more(change),
    )
