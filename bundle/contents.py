"""What a bundle carries: the manifests, and the blobs they refer to."""

from __future__ import annotations

from collections.abc import Mapping

from hub_cache.models import HUB_MANIFESTS, ModelManifest
from mirror.core.storage import BlobStore
from mirror.pypi.manifest import PYPI_MANIFESTS, Manifest

MANIFESTS = "manifests/"


def read_manifests(store: BlobStore) -> dict[str, bytes]:
    out = {}
    for key in store.list(MANIFESTS):
        data = store.get(key) if key.endswith(".json") else None
        if data is not None:
            out[key] = data
    return out


def referenced(manifests: Mapping[str, bytes]) -> dict[str, int | None]:
    """sha256 -> size (None: unknown) of every blob these manifests refer to."""
    blobs: dict[str, int | None] = {}
    for key, data in manifests.items():
        if key.startswith(PYPI_MANIFESTS + "/"):
            for wheel in Manifest.from_bytes(data).files:
                blobs[wheel.sha256] = wheel.size
                if wheel.metadata_sha256:
                    blobs.setdefault(wheel.metadata_sha256, None)
        elif key.startswith(HUB_MANIFESTS + "/"):
            model = ModelManifest.from_bytes(data)
            blobs[model.sha256] = model.size
    return blobs
