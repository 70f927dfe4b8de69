"""What changed between two contracts of a model, and whether code written against the
old one still works with the new. Breaking: a signature, an input or an output removed
(or renamed), a dtype or a rank changed, a known dimension changed, an input's open
dimension fixed, a new input the model has no default for. Compatible: a signature or an
output added, a dimension relaxed to unknown, an input given a default."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mirror.core.contracts import Contract, Signature, TensorSpec


class Severity(StrEnum):
    BREAKING = "breaking"
    COMPATIBLE = "compatible"


@dataclass(frozen=True)
class Change:
    severity: Severity
    signature: str
    what: str  # one line: "input 'x' dtype float32 -> uint8"

    def as_json(self) -> dict[str, str]:
        return {"severity": self.severity.value, "signature": self.signature, "what": self.what}

    @classmethod
    def from_json(cls, doc: dict[str, str]) -> Change:
        return cls(Severity(doc["severity"]), doc["signature"], doc["what"])

    def shown(self) -> str:
        return f"{self.severity.upper()} {self.signature}: {self.what}"


def breaking(changes: list[Change]) -> list[Change]:
    return [c for c in changes if c.severity is Severity.BREAKING]


def compare(old: Contract, new: Contract) -> list[Change]:
    """Every change from `old` to `new`, signature by signature, in name order."""
    changes: list[Change] = []
    for before in old.signatures:
        after = new.signature(before.name)
        if after is None:
            changes.append(Change(Severity.BREAKING, before.name, "signature removed"))
        else:
            changes += _signature(before, after)
    for after in new.signatures:
        if old.signature(after.name) is None:
            changes.append(Change(Severity.COMPATIBLE, after.name, "signature added"))
    return changes


def _signature(old: Signature, new: Signature) -> list[Change]:
    changes = _side(old.name, "input", old.inputs, new.inputs)
    return changes + _side(old.name, "output", old.outputs, new.outputs)


def _side(
    signature: str, side: str, old: tuple[TensorSpec, ...], new: tuple[TensorSpec, ...]
) -> list[Change]:
    before = {s.name: s for s in old}
    after = {s.name: s for s in new}
    gone = [before[n] for n in sorted(before.keys() - after.keys())]
    added = [after[n] for n in sorted(after.keys() - before.keys())]

    def change(severity: Severity, what: str) -> Change:
        return Change(severity, signature, f"{side} {what}")

    changes: list[Change] = []
    renamed = len(gone) == 1 == len(added) and _same_spec(gone[0], added[0])
    if renamed:
        changes.append(change(Severity.BREAKING, f"{gone[0].name!r} renamed {added[0].name!r}"))
        gone, added = [], []
    changes += [change(Severity.BREAKING, f"{s.name!r} ({s.shown()}) removed") for s in gone]
    for spec in added:
        if side == "input" and not spec.optional:
            what = f"{spec.name!r} ({spec.shown()}) added, required: callers do not feed it"
            changes.append(change(Severity.BREAKING, what))
        else:
            changes.append(change(Severity.COMPATIBLE, f"{spec.name!r} ({spec.shown()}) added"))
    for name in sorted(before.keys() & after.keys()):
        for severity, what in _spec(side, before[name], after[name]):
            changes.append(change(severity, f"{name!r} {what}"))
    return changes


def _same_spec(a: TensorSpec, b: TensorSpec) -> bool:
    return (a.dtype, a.shape, a.optional) == (b.dtype, b.shape, b.optional)


def _spec(side: str, old: TensorSpec, new: TensorSpec) -> list[tuple[Severity, str]]:
    found: list[tuple[Severity, str]] = []
    if old.dtype != new.dtype:
        found.append((Severity.BREAKING, f"dtype {old.dtype} -> {new.dtype}"))
    if old.optional != new.optional:
        if new.optional:
            found.append((Severity.COMPATIBLE, "now has a default"))
        else:
            found.append((Severity.BREAKING, "no longer has a default: now required"))
    found += _shape(side, old, new)
    return found


def _shape(side: str, old: TensorSpec, new: TensorSpec) -> list[tuple[Severity, str]]:
    was = f"{old.shown()} -> {new.shown()}"
    if old.shape == new.shape:
        return []
    if new.shape is None:  # any rank now: nothing fed or read before is refused
        return [(Severity.COMPATIBLE, f"rank relaxed to unknown ({was})")]
    if old.shape is None:
        # An input that took any rank takes one now; an output of any rank has one now.
        severity = Severity.BREAKING if side == "input" else Severity.COMPATIBLE
        return [(severity, f"rank fixed ({was})")]
    if len(old.shape) != len(new.shape):
        return [(Severity.BREAKING, f"rank {len(old.shape)} -> {len(new.shape)} ({was})")]
    found: list[tuple[Severity, str]] = []
    for axis, (a, b) in enumerate(zip(old.shape, new.shape, strict=True)):
        if a == b:
            continue
        if b is None:
            found.append((Severity.COMPATIBLE, f"dimension {axis} relaxed to unknown ({was})"))
        elif a is None:
            # Fed any size before: an input now refuses all but one; an output's
            # reader still handles the one it gets.
            severity = Severity.BREAKING if side == "input" else Severity.COMPATIBLE
            found.append((severity, f"dimension {axis} fixed to {b} ({was})"))
        else:
            found.append((Severity.BREAKING, f"dimension {axis} {a} -> {b} ({was})"))
    return found


BLOCK = "block"  # on_contract_change: refuse a version that breaks the pin
# A ContractCheck's state, as pages, `/api/status`, `hub check` and the metrics say it.
MATCHES, COMPATIBLE, BREAKING, NOT_READ = "matches", "compatible", "breaking", "not read"
STATES = (MATCHES, COMPATIBLE, BREAKING, NOT_READ)


# A ModelManifest's `contract_check`: the new version against its pinned contract.
@dataclass(frozen=True)
class ContractCheck:
    pinned: str  # the pinned file, as the config names it
    on_change: str  # "report" or "block"
    changes: tuple[Change, ...] = ()
    unread: str = ""  # why the version's own contract could not be read

    @property
    def breaking(self) -> list[Change]:
        return breaking(list(self.changes))

    @property
    def state(self) -> str:
        """As pages and `/api/status` say it."""
        if self.unread:
            return NOT_READ
        if self.breaking:
            return BREAKING
        return COMPATIBLE if self.changes else MATCHES

    @property
    def blocks(self) -> bool:
        return self.on_change == BLOCK and (bool(self.unread) or bool(self.breaking))

    def refusal(self) -> str:
        """Why the version is not served (a blocking check), naming the change."""
        if self.unread:
            why = f"its contract cannot be read ({self.unread})"
        else:
            why = "it breaks the pinned contract: " + "; ".join(c.shown() for c in self.breaking)
        return (
            f"{why} ({self.pinned}, on_contract_change = block); "
            "the version served before stays served"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "pinned": self.pinned,
            "on_change": self.on_change,
            "state": self.state,
            "changes": [c.as_json() for c in self.changes],
            "unread": self.unread,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ContractCheck:
        return cls(
            str(doc.get("pinned", "")),
            str(doc.get("on_change", "")),
            tuple(Change.from_json(c) for c in doc.get("changes", [])),
            str(doc.get("unread", "")),
        )
