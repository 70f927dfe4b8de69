"""What a centre offers its followers, as one document: its journal's head and the
sha256 of every document a site takes (each committed manifest, each snapshot, the
promotion, the quarantine rules). A site diffs it against its own store and asks only
for what differs; the keys it may ask for are checked lexically (`followed_key`)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hub_cache.models import HUB_MANIFESTS
from mirror.advisories.database import CURRENT
from mirror.core.journal import Journal
from mirror.core.quarantine import QUARANTINE
from mirror.core.snapshots import PROMOTED, SNAPSHOTS
from mirror.core.storage import BlobStore, DocumentReader
from mirror.pypi.manifest import PYPI_MANIFESTS

_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+=-]{0,200}$")
_SNAPSHOT = re.compile(r"^snapshots/[A-Za-z0-9][A-Za-z0-9._-]{0,63}\.json$")
# The documents followed beside manifests and snapshots: the promotion, the quarantine,
# and the advisory database in force (a site's `audit` answers by the centre's).
POLICY = (PROMOTED, QUARANTINE, CURRENT)


def followed_key(key: str) -> bool:
    """A store key a follower may ask for and write: a manifest under manifests/pypi or
    manifests/hub (each part a plain name, no `..`, no empty part), a snapshot, or one
    of the policy documents. Anything else (state, runs, journal, blobs) is not served
    and never written from a centre's word."""
    if key in POLICY or _SNAPSHOT.match(key):
        return True
    for prefix in (PYPI_MANIFESTS + "/", HUB_MANIFESTS + "/"):
        if key.startswith(prefix) and key.endswith(".json") and len(key) <= 1024:
            parts = key[len(prefix) :].split("/")
            return all(_PART.match(p) and p not in (".", "..") for p in parts)
    return False


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class CentreState:
    seq: int  # the journal head's number, -1 for an empty journal
    head: str  # its sha256, "" for an empty journal
    at: str  # when the head was written
    manifests: dict[str, str] = field(default_factory=dict)  # key -> sha256 of its bytes
    snapshots: dict[str, str] = field(default_factory=dict)
    policy: dict[str, str] = field(default_factory=dict)  # PROMOTED/QUARANTINE, if present

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "head": self.head,
            "at": self.at,
            "manifests": self.manifests,
            "snapshots": self.snapshots,
            "policy": self.policy,
        }

    @classmethod
    def from_json(cls, doc: Any) -> CentreState:
        """Refuses (ValueError) a document that is not one, or names a key outside
        what a follower takes, or a sha256 that is not one."""
        if not isinstance(doc, Mapping):
            raise ValueError("not an object")
        tables = {}
        for name in ("manifests", "snapshots", "policy"):
            table = doc.get(name, {})
            if not isinstance(table, Mapping):
                raise ValueError(f"{name} is not an object")
            for key, sha in table.items():
                if not followed_key(str(key)) or not _is_sha256(sha):
                    raise ValueError(f"{name} names {str(key)[:120]!r}, which a site never takes")
            tables[name] = {str(k): str(v) for k, v in table.items()}
        return cls(int(doc["seq"]), str(doc["head"]), str(doc.get("at", "")), **tables)


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) is not None


def _hashed(store: DocumentReader, keys: list[str]) -> dict[str, str]:
    out = {}
    for key in keys:
        data = store.get(key) if followed_key(key) else None
        if data is not None:
            out[key] = sha256_of(data)
    return out


def state_of(store: BlobStore) -> CentreState:
    """This mirror as a follower sees it: read the head first, so a commit in between
    shows as a head the follower has not seen (it pulls again) and never as one it has."""
    head = Journal(store).head()
    manifests = [k for k in store.list("manifests/") if k.endswith(".json")]
    snapshots = [k for k in store.list(SNAPSHOTS) if k.endswith(".json")]
    return CentreState(
        seq=head.seq if head else -1,
        head=head.sha256 if head else "",
        at=str(head.doc.get("at", "")) if head else "",
        manifests=_hashed(store, manifests),
        snapshots=_hashed(store, snapshots),
        policy=_hashed(store, list(POLICY)),
    )


def differs(held: Mapping[str, bytes], wanted: Mapping[str, str]) -> list[str]:
    """The keys of `wanted` (key -> sha256) whose document `held` lacks or holds other
    bytes of: what a follower must ask for."""
    return sorted(k for k, sha in wanted.items() if k not in held or sha256_of(held[k]) != sha)
