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


def referenced(manifests: Mapping[str, bytes]) -> set[str]:
    """The sha256 of every blob these manifests refer to."""
    blobs: set[str] = set()
    for key, data in manifests.items():
        if key.startswith(PYPI_MANIFESTS + "/"):
            blobs.update(blob.sha256 for blob in Manifest.from_bytes(data).blobs())
        elif key.startswith(HUB_MANIFESTS + "/"):
            blobs.update(sha for sha, _, _ in ModelManifest.from_bytes(data).blobs())
    return blobs
