"""Known vulnerabilities (mirror.advisories.policy): a closure that still needs a release
its environment blocks is refused (the resolver avoids them first, so this is the
release no requirement-meeting alternative replaces, or a closure reused unresolved);
a mirrored file every environment blocks (any `MAL-` one) is withheld like a
quarantined file, source `advisory`: off every page, 410 naming the advisory, blob kept;
lifted when that stops being so (a waiver, a policy, a withdrawn record). Each waiver's
first use and its expiry are journaled once, not every sync.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from mirror.advisories.policy import Screen, expired, why_blocked
from mirror.core.config import PypiConfig
from mirror.core.quarantine import (
    QuarantineRule,
    add_rules,
    as_change,
    filename_facts,
    new_rule,
    read_quarantine,
    remove_rule,
)
from mirror.core.storage import BlobStore
from mirror.pypi.closure_checks.check import Finding, SyncView, Verdict
from mirror.pypi.resolve import Wheel

SOURCE = "advisory"
WAIVERS_STATE = "state/advisories/waivers.json"  # what the journal was last told


class Advisories:
    def __init__(self, pypi: PypiConfig) -> None:
        self.screen: Screen | None = None
        self.withheld: set[str] = set()  # file names under an advisory rule

    def prepare(self, view: SyncView) -> list[dict[str, Any]]:
        self.screen = screen = view.screen
        if screen is None:
            return []
        if not view.leading():  # a paused run's view is stale: no rule from it
            self.withheld = set(_wanted(screen, view.files, view.actor))
            return []
        changes = withhold(view.store, screen, view.files, view.actor)
        self.withheld = {r.spec for r in read_quarantine(view.store).rules if r.source == SOURCE}
        return changes + _waiver_news(view.store, screen, view.files)

    def review(self, slot: str, files: Sequence[Wheel]) -> list[Finding]:
        if self.screen is None:
            return []
        environment = slot.split("/", 1)[0]
        named: dict[tuple[str, str], list[str]] = defaultdict(list)
        for w in files:
            if w.filename not in self.withheld:  # the quarantine check refuses those
                named[(w.project, w.version)].append(w.filename)
        return [
            Finding(
                Verdict.REFUSE,
                f"{f.project} {f.version}, blocked by advisory {why_blocked(f)}",
            )
            for f in self.screen.blocked(environment, named)
        ]


def _wanted(screen: Screen, files: Sequence[Wheel], actor: str) -> dict[str, QuarantineRule]:
    wanted = {}
    for w in files:
        why = [why_blocked(f) for f in screen.blocked_everywhere(w.project, w.version)]
        if why:
            reason = f"{w.project} {w.version}: {'; '.join(why)}"
            wanted[w.filename] = new_rule(w.filename, reason, actor, False, SOURCE)
    return wanted


def withhold(
    store: BlobStore, screen: Screen, files: Sequence[Wheel], actor: str
) -> list[dict[str, Any]]:
    """Each of `files` every environment blocks put under a rule, each advisory rule
    nothing blocks any more lifted; the journal's changes. The sync runs it, and an
    inner mirror after a bundle brings closures and the database they were checked by."""
    wanted = _wanted(screen, files, actor)
    # A file already withheld for another reason (upstream removed it, an operator's
    # rule) stays under that rule: replacing it would flip the two back and forth, one
    # journal entry a sync.
    others = {r.spec for r in read_quarantine(store).rules if r.source != SOURCE}
    added = add_rules(store, [r for name, r in wanted.items() if name not in others])
    changes = [as_change(r, "withheld") for r in added]
    for rule in read_quarantine(store).rules:
        stale = rule.source == SOURCE and rule.spec not in wanted
        if stale and _lifted(screen, rule.spec) and remove_rule(store, rule.spec, False):
            changes.append(as_change(rule, "released"))
    return changes


def _lifted(screen: Screen, filename: str) -> bool:
    """An advisory rule on a file no closure holds any more: lifted once nothing
    blocks it everywhere."""
    facts = filename_facts(filename)
    return facts is None or not screen.blocked_everywhere(*facts)


def _waiver_news(store: BlobStore, screen: Screen, files: Sequence[Wheel]) -> list[dict[str, Any]]:
    """Journal entries for waivers newly used or newly expired, remembered so that the
    next sync says nothing unless that changes."""
    raw = store.get(WAIVERS_STATE)
    try:
        before = json.loads(raw) if raw else {}
        used_before = {tuple(u) for u in before.get("used", [])}
        expired_before = set(before.get("expired", []))
    except (ValueError, TypeError, AttributeError):
        used_before, expired_before = set(), set()
    used: dict[tuple[str, str, str], dict[str, Any]] = {}
    for f in screen.matcher.match((w.project, w.version) for w in files):
        for policy in screen.policies.values():
            waiver = policy.waiver(f) if policy.would_block(f) else None
            if waiver is not None:
                key = (waiver.id, f.project, f.version)
                entry = used.setdefault(
                    key,
                    {
                        "event": "advisory waived",
                        "advisory": f.advisory.id,
                        "project": f.project,
                        "version": f.version,
                        "until": waiver.until.isoformat(),
                        "reason": waiver.reason,
                        "environments": [],
                    },
                )
                entry["environments"].append(policy.environment)
    any_policy = next(iter(screen.policies.values()), None)
    gone = expired(any_policy.waivers, any_policy.today) if any_policy else []
    changes = [entry for key, entry in sorted(used.items()) if key not in used_before]
    changes += [
        {
            "event": "waiver expired",
            "advisory": w.id,
            "projects": list(w.projects),
            "until": w.until.isoformat(),
        }
        for w in gone
        if w.id not in expired_before
    ]
    state = {"used": sorted(used), "expired": sorted({w.id for w in gone})}
    if state != {"used": sorted(used_before), "expired": sorted(expired_before)}:
        store.put(WAIVERS_STATE, json.dumps(state, indent=1).encode())
    return changes
