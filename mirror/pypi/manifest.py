"""PyPI manifests: what each target's closure contains. Written last, they are the commit point."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from packaging.utils import canonicalize_name

from mirror.core.config import Target
from mirror.core.storage import BlobStore
from mirror.pypi.resolve import Wheel

PYPI_MANIFESTS = "manifests/pypi"


def manifest_key(target_id: str) -> str:
    return f"{PYPI_MANIFESTS}/{target_id}.json"


@dataclass(frozen=True)
class BlobRef:
    sha256: str
    size: int | None  # None: not recorded
    name: str  # what it is: a wheel's file name, or that name + ".metadata"
    source: str  # where upstream serves it, "" if nowhere


@dataclass
class Manifest:
    target: Target
    requirements: tuple[str, ...]
    files: list[Wheel] = field(default_factory=list)
    synced_at: str = ""

    def to_bytes(self) -> bytes:
        doc = {
            "target": {
                "id": self.target.id,
                "python": self.target.python,
                "platform": self.target.platform,
            },
            "requirements": list(self.requirements),
            "synced_at": self.synced_at,
            "files": [w.as_json() for w in self.files],
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        doc = json.loads(data)
        target = Target(doc["target"]["python"], doc["target"]["platform"])
        files = [Wheel.from_json(f) for f in doc["files"]]
        return cls(target, tuple(doc["requirements"]), files, doc.get("synced_at", ""))

    def blobs(self) -> Iterator[BlobRef]:
        """Every blob this manifest refers to: each wheel, and its METADATA file."""
        for wheel in self.files:
            yield BlobRef(wheel.sha256, wheel.size, wheel.filename, wheel.url)
            if wheel.metadata_sha256:
                # Upstream serves the same bytes beside the wheel (PEP 658), if it has them.
                source = f"{wheel.url}.metadata" if wheel.url else ""
                yield BlobRef(wheel.metadata_sha256, None, f"{wheel.filename}.metadata", source)

    def has(self, wheel: Wheel) -> bool:
        return any(f.filename == wheel.filename and f.sha256 == wheel.sha256 for f in self.files)


def load_manifest(store: BlobStore, target_id: str) -> Manifest | None:
    data = store.get(manifest_key(target_id))
    return None if data is None else Manifest.from_bytes(data)


def save_manifest(store: BlobStore, manifest: Manifest) -> None:
    store.put(manifest_key(manifest.target.id), manifest.to_bytes())


def load_all(store: BlobStore) -> list[Manifest]:
    out = []
    for key in store.list(PYPI_MANIFESTS):
        if key.endswith(".json"):
            data = store.get(key)
            if data is not None:
                out.append(Manifest.from_bytes(data))
    return out


def published_files(store: BlobStore) -> dict[str, dict[str, Wheel]]:
    """Every mirrored file, by canonical project then filename, across all targets."""
    projects: dict[str, dict[str, Wheel]] = {}
    for manifest in load_all(store):
        for wheel in manifest.files:
            projects.setdefault(canonicalize_name(wheel.project), {})[wheel.filename] = wheel
    return projects
