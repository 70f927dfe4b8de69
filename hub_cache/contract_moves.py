"""What a move between two sets of model manifests (the live mirror's, a snapshot's)
changes in the contracts of the models both hold: `snapshot show --against`, and the
check `snapshot promote` makes before it moves the fleet. Read from the contracts kept
at sync (hub_cache.contracts): a promote never unpacks a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub_cache.contracts import kept_contract
from hub_cache.models import load_models
from mirror.core.contract_changes import Change, breaking, compare
from mirror.core.storage import DocumentReader

NOT_READ = "contract not read"


@dataclass(frozen=True)
class ContractMove:
    """One model whose blob differs between the two sets."""

    handle: str
    before: str  # the sha256 of the blob moved from
    after: str  # and to
    changes: tuple[Change, ...] = ()
    unread: str = ""  # set: the side(s) whose contract is not kept: "before", "after"

    @property
    def breaking(self) -> list[Change]:
        return breaking(list(self.changes))

    def lines(self) -> list[str]:
        head = f"model {self.handle} {self.before[:16]} -> {self.after[:16]}"
        if self.unread:
            return [f"{head}: {NOT_READ} ({self.unread})"]
        if not self.changes:
            return [f"{head}: same contract"]
        return [f"{head}:"] + [f"  {c.shown()}" for c in self.changes]

    def accepted(self) -> list[str]:
        """Its breaking changes, as a promote that accepts them journals them."""
        return [f"model {self.handle}: {c.shown()}" for c in self.breaking]

    def as_json(self) -> dict[str, Any]:
        return {
            "handle": self.handle,
            "before": self.before,
            "after": self.after,
            "changes": [c.as_json() for c in self.changes],
            "unread": self.unread,
        }


def contract_moves(
    contracts: DocumentReader, before: DocumentReader, after: DocumentReader
) -> list[ContractMove]:
    """Per model path both `before` and `after` hold with different blobs, what its
    contract does from one to the other (`contracts`: where the kept ones are)."""
    old = {m.path: m for m in load_models(before)}
    moves: list[ContractMove] = []
    for model in load_models(after):
        was = old.get(model.path)
        if was is None or was.sha256 == model.sha256:
            continue
        then = kept_contract(contracts, was.sha256)
        now = kept_contract(contracts, model.sha256)
        if then is None or now is None:
            unread = " and ".join(s for s, c in (("before", then), ("after", now)) if c is None)
            moves.append(ContractMove(model.handle, was.sha256, model.sha256, unread=unread))
        else:
            changes = tuple(compare(then, now))
            moves.append(ContractMove(model.handle, was.sha256, model.sha256, changes))
    return moves
