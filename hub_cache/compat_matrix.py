"""The model x environment matrix as last checked (verify.compat makes it): kept in the
store for the status page, the API, the metrics and each model's page, which
`hub prefetch --env` reads. Each pair names the archive it checked, so a model replaced
since shows as not checked, never with the old answer."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from hub_cache.models import ModelManifest
from mirror.core.storage import BlobStore

COMPAT = "state/hub/compat.json"
OK, INCOMPATIBLE, UNCHECKED = "ok", "incompatible", "unchecked"


@dataclass(frozen=True)
class Pair:
    model: str  # the handle
    environment: str
    status: str  # ok | incompatible | unchecked
    missing_ops: list[str] = field(default_factory=list)
    provided_by: list[str] = field(default_factory=list)  # packages that register them
    reason: str = ""
    sha256: str = ""  # the archive checked
    tensorflow: str = ""  # the environment's TensorFlow, for a model checked against it
    runtime: str = ""  # what it was checked against, as messages say it ("ai-edge-litert 2.3.0")

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def keep_matrix(store: BlobStore, pairs: list[Pair], checked: list[str]) -> None:
    kept = [p for p in read_matrix(store) if p.environment not in checked]
    doc = {
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "pairs": [p.as_json() for p in kept + pairs],
    }
    store.put(COMPAT, json.dumps(doc, indent=1).encode())


def read_matrix(store: BlobStore) -> list[Pair]:
    raw = store.get(COMPAT)
    if not raw:
        return []
    try:
        return [Pair(**row) for row in json.loads(raw).get("pairs", [])]
    except (ValueError, TypeError, AttributeError):
        return []


def model_matrix(matrix: list[Pair], model: ModelManifest) -> dict[str, Pair]:
    """The checked pairs of this very archive, by environment."""
    return {
        p.environment: p for p in matrix if p.model == model.handle and p.sha256 == model.sha256
    }
