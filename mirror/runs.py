"""Run records: one JSON document per job run, under runs/<job>/, newest last by name."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mirror.storage import BlobStore

RUNS = "runs"


@dataclass
class RunRecord:
    job: str
    trigger: str
    started: datetime
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @classmethod
    def begin(cls, job: str, trigger: str) -> RunRecord:
        return cls(job, trigger, datetime.now(UTC))

    @property
    def key(self) -> str:
        return f"{RUNS}/{self.job}/{self.started.strftime('%Y%m%dT%H%M%S.%fZ')}-{self.id}.json"

    def finish(
        self,
        store: BlobStore,
        ok: bool,
        counts: dict[str, int],
        bytes_moved: int,
        errors: list[dict[str, str]],
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        ended = datetime.now(UTC)
        doc = {
            "job": self.job,
            "id": self.id,
            "trigger": self.trigger,
            "start": self.started.isoformat(),
            "end": ended.isoformat(),
            "seconds": round((ended - self.started).total_seconds(), 3),
            "outcome": "ok" if ok else "failed",
            "counts": counts,
            "bytes": bytes_moved,
            "errors": errors,
            **(extra or {}),
        }
        store.put(self.key, json.dumps(doc, indent=1).encode())
        return doc


def latest_runs(store: BlobStore, job: str, limit: int = 20) -> list[dict[str, Any]]:
    out = []
    for key in reversed(store.list(f"{RUNS}/{job}")[-limit:]):
        data = store.get(key)
        if data is not None:
            out.append(json.loads(data))
    return out
