"""PyPI manifests: what each environment's closure contains for each of its targets.
Written last, they are the commit point.

Layout: manifests/pypi/<environment>/<target>.json. The release before environments
wrote manifests/pypi/<target>.json: such a manifest is the environment "default" and is
moved under it by `migrate_layout` (run by the sync and by `up`, under the pypi lease).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from packaging.utils import canonicalize_name

from mirror.core.commits import compare_and_set
from mirror.core.config import DEFAULT_ENVIRONMENT, Target
from mirror.core.storage import BlobStore, DocumentReader
from mirror.pypi.resolve import Wheel

PYPI_MANIFESTS = "manifests/pypi"


def manifest_key(environment: str, target_id: str) -> str:
    return f"{PYPI_MANIFESTS}/{environment}/{target_id}.json"


def _legacy_key(target_id: str) -> str:
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
    environment: str = DEFAULT_ENVIRONMENT
    constraints: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return manifest_key(self.environment, self.target.id)

    @property
    def where(self) -> str:
        """How reports name it: environment/target."""
        return f"{self.environment}/{self.target.id}"

    def to_bytes(self) -> bytes:
        doc = {
            "environment": self.environment,
            "constraints": list(self.constraints),
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
        return cls(
            target,
            tuple(doc["requirements"]),
            files,
            doc.get("synced_at", ""),
            # The release before environments wrote neither: its one set is "default".
            doc.get("environment", DEFAULT_ENVIRONMENT),
            tuple(doc.get("constraints", ())),
        )

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


def load_manifest(store: DocumentReader, environment: str, target_id: str) -> Manifest | None:
    data = store.get(manifest_key(environment, target_id))
    if data is None and environment == DEFAULT_ENVIRONMENT:
        data = store.get(_legacy_key(target_id))  # not migrated yet
    return None if data is None else Manifest.from_bytes(data)


def save_manifest(store: BlobStore, manifest: Manifest) -> None:
    store.put(manifest.key, manifest.to_bytes())


def save_manifest_over(store: BlobStore, manifest: Manifest, read: Manifest | None) -> bool:
    """Commit `manifest` only over `read`, what this run read at its start (None: only
    where there was none); False if another writer committed in between (a replica that
    took the lease over while this one was paused), whose manifest then stands."""
    return compare_and_set(
        store,
        manifest.key,
        manifest.to_bytes(),
        None if read is None else read.to_bytes(),
        lambda raw: Manifest.from_bytes(raw).to_bytes(),
    )


def delete_manifest(store: BlobStore, manifest: Manifest) -> None:
    store.delete(manifest.key)
    if manifest.environment == DEFAULT_ENVIRONMENT:
        store.delete(_legacy_key(manifest.target.id))


def _is_legacy(key: str) -> bool:
    return "/" not in key[len(PYPI_MANIFESTS) + 1 :]


def load_all(store: DocumentReader, environment: str | None = None) -> list[Manifest]:
    """Every committed manifest, or one environment's. A manifest still at its legacy key
    counts as the default environment's unless one was already written under it."""
    prefix = PYPI_MANIFESTS if environment is None else f"{PYPI_MANIFESTS}/{environment}"
    keys = [k for k in store.list(prefix) if k.endswith(".json")]
    if environment == DEFAULT_ENVIRONMENT:
        keys += [k for k in store.list(PYPI_MANIFESTS) if k.endswith(".json") and _is_legacy(k)]
    found: dict[str, Manifest] = {}
    for key in sorted(keys, key=_is_legacy):  # the new layout first: it wins
        data = store.get(key)
        if data is not None:
            manifest = Manifest.from_bytes(data)
            found.setdefault(manifest.where, manifest)
    return sorted(found.values(), key=lambda m: m.where)


def stored_environments(store: DocumentReader) -> set[str]:
    """The environments some committed manifest belongs to (an inner mirror serves what
    its bundles brought, whatever its own config names)."""
    names = set()
    for key in store.list(PYPI_MANIFESTS):
        parts = key[len(PYPI_MANIFESTS) + 1 :].split("/")
        names.add(parts[0] if len(parts) == 2 else DEFAULT_ENVIRONMENT)
    return names


def migrate_layout(store: BlobStore) -> list[str]:
    """Move manifests of the release before environments under "default"; returns the
    target ids moved. Idempotent: a crash between the write and the delete leaves a
    legacy copy that load_all ignores and the next run removes."""
    moved = []
    for key in store.list(PYPI_MANIFESTS):
        if not (key.endswith(".json") and _is_legacy(key)):
            continue
        data = store.get(key)
        if data is None:
            continue
        manifest = Manifest.from_bytes(data)
        if store.get(manifest.key) is None:
            save_manifest(store, manifest)
            moved.append(manifest.target.id)
        store.delete(key)
    return moved


def published_files(
    store: DocumentReader, environment: str | None = None
) -> dict[str, dict[str, Wheel]]:
    """Every mirrored file, by canonical project then filename: across every environment
    and target (the union index), or one environment's."""
    projects: dict[str, dict[str, Wheel]] = {}
    for manifest in load_all(store, environment):
        for wheel in manifest.files:
            projects.setdefault(canonicalize_name(wheel.project), {})[wheel.filename] = wheel
    return projects
