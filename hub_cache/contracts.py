"""Each model's interface contract, read at sync by its format (hub_cache.formats, no
TensorFlow) and kept in the store under the model blob's sha256, as its ops are: a blob
never changes, so neither does what it takes and gives. And the check a new version of
a model meets before it is served, against the contract its `[hub] models` entry pins:
what changed (mirror.core.contract_changes), and whether that blocks it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from hub_cache.errors import NotASavedModel
from hub_cache.formats import format_of
from hub_cache.formats.saved_model_ops import keep_ops
from hub_cache.formats.saved_model_signatures import saved_model_contract
from mirror.core.config.hub import HubConfig, PinnedContract, contract_policy
from mirror.core.contract_changes import ContractCheck, compare
from mirror.core.contracts import Contract, ContractInvalid
from mirror.core.storage import BlobStore, DocumentReader

if TYPE_CHECKING:
    from hub_cache.models import ModelManifest

CONTRACT_STATE = "state/hub/contracts"  # <sha256 of the model blob>.json: its contract


def model_contract(
    store: BlobStore, sha256: str, archive: Mapping[str, object], max_bytes: int
) -> Contract | str:
    """The contract of the model kept as blob `sha256` (its manifest's `archive` facts),
    read once and kept; or why it is not read (not kept: a later release may read it)."""
    cached = kept_contract(store, sha256)
    if cached is not None:
        return cached
    model_format = format_of(archive)
    if model_format is None:
        return f"its root file {archive.get('root_file', '')!r} is of no format known here"
    found = model_format.contract(store, sha256, archive, max_bytes)
    if isinstance(found, Contract):
        store.put(f"{CONTRACT_STATE}/{sha256}.json", found.to_bytes())
    return found


def keep_graph_facts(store: BlobStore, sha256: str, graph: bytes) -> None:
    """A SavedModel's contract and ops, read from the `saved_model.pb` its archive check
    kept in memory (hub_cache.archive.Capture), so neither reads the archive again. A
    graph that does not parse is left to the reads that follow: they say why."""
    try:
        store.put(f"{CONTRACT_STATE}/{sha256}.json", saved_model_contract(graph).to_bytes())
        keep_ops(store, sha256, graph)
    except NotASavedModel:
        return


def kept_contract(store: DocumentReader, sha256: str) -> Contract | None:
    """The contract read for blob `sha256` before, if it was (pages read only this: a
    request never unpacks a model)."""
    key = f"{CONTRACT_STATE}/{sha256}.json"
    cached = store.get(key)
    if cached is None:
        return None
    try:
        return Contract.from_bytes(cached, key)
    except ContractInvalid:
        return None  # written by a release that wrote another version of it: read again


def check_contract(found: Contract | str, pinned: PinnedContract, on_change: str) -> ContractCheck:
    """A version whose contract is `found` (or why it is unread) against the pinned one."""
    if isinstance(found, str):
        return ContractCheck(pinned.shown, on_change, unread=found)
    return ContractCheck(pinned.shown, on_change, tuple(compare(pinned.contract, found)))


def served_check(
    store: DocumentReader, model: ModelManifest, hub: HubConfig
) -> ContractCheck | None:
    """The served version against the contract its entry pins now (None where nothing is
    pinned now): a team that unpins it, or pins the contract it accepts instead, sees
    that on the pages, in the metrics and in `hub check`, not the check made when the
    version was published (that one stays in the journal). Compared from its kept
    contract; one never read keeps why, as the check at publishing said it."""
    entry = next((m for m in hub.models if m.handle == model.handle and m.contract), None)
    if entry is None or entry.contract is None:
        return None
    policy = contract_policy(entry, hub)
    kept = kept_contract(store, model.sha256)
    if kept is None and model.contract_check:
        unread = ContractCheck.from_json(model.contract_check).unread
        return check_contract(unread or "not read yet", entry.contract, policy)
    return check_contract(kept or "not read yet", entry.contract, policy)
