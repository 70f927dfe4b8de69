"""Keras 3: a `.keras` file (one zip: config.json, metadata.json, the weights) loaded by
`keras.saving.load_model`, and a KerasHub preset (a folder: config.json, metadata.json,
the weights, a tokenizer's files), which Kaggle Models serves archived for the `keras`
framework and `from_preset` reads. Both are checked as Keras reads them with
`safe_mode=True` (keras_model.py: no Lambda, no class from outside Keras), before any
manifest names them."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import BinaryIO

from hub_cache.errors import ArchiveRejected
from hub_cache.formats.base import KAGGLEHUB_CACHE, GraphOps, RuntimeKind
from hub_cache.formats.keras_model import (
    CONFIG,
    KerasModel,
    inspect_keras_file,
    inspect_kerashub_preset,
)
from hub_cache.formats.keras_runtime import KERAS as KERAS_RUNTIME
from hub_cache.formats.probes import keras_load
from hub_cache.limits import ArchiveLimits
from mirror.core.contracts import Contract
from mirror.core.model_forms import KERAS
from mirror.core.storage import BlobStore

KERAS_FILE_KEY = "keras-file"  # a manifest's name for a `.keras` file (`hub import`)
# Keras keeps input specs in config.json but no output's dtype or shape: those take
# building the model. Said plainly rather than half a contract.
CONTRACT_NOT_READ = "Keras models: the contract is not read yet (outputs need the model built)"


class _KerasForm:
    """What a preset and a `.keras` file share: Keras runs both, from the classes their
    config names, through the same probe; neither is served by TF Serving."""

    runtime: RuntimeKind | None = KERAS_RUNTIME
    serving_platform: str | None = None

    def ops(
        self, store: BlobStore, sha256: str, archive: Mapping[str, object], max_bytes: int
    ) -> GraphOps | str:
        return keras_classes(archive)

    def contract(
        self, store: BlobStore, sha256: str, archive: Mapping[str, object], max_bytes: int
    ) -> Contract | str:
        return CONTRACT_NOT_READ

    def load_probe(self, root_file: str) -> Path | str:
        return Path(keras_load.__file__)


class KerasPreset(_KerasForm):
    key = KERAS
    name = "KerasHub preset"
    looks_for = "config.json"
    single_file = False
    checks_folder = True
    fetch_query = "tf-hub-format=compressed"  # Kaggle's download, as for any framework
    served_query = ("keras-format", "preset")
    suffix = ".tar.gz"
    client_import = "import keras_hub"
    caches = frozenset({KAGGLEHUB_CACHE})  # from_preset("kaggle://...") reads kagglehub's

    def root_file(self, root_files: Collection[str]) -> str | None:
        return CONFIG if CONFIG in root_files else None

    def inspect_file(
        self, reader: BinaryIO, size: int, name: str, limits: ArchiveLimits
    ) -> dict[str, object]:
        raise ArchiveRejected(f"{name}: a KerasHub preset is a folder, archived; not one file")

    def check_folder(self, folder: Path) -> dict[str, object]:
        files = {
            Path(root, n).relative_to(folder).as_posix(): Path(root, n).stat().st_size
            for root, _, names in os.walk(folder)
            for n in names
        }
        preset = inspect_kerashub_preset(files, lambda p: (folder / p).read_bytes())
        return {"keras": preset.as_json()}

    def usage(self, mirror_handle: str) -> dict[str, str]:
        return {"prefetch_then": 'keras_hub.models.Backbone.from_preset("DIR")'}


class KerasFile(_KerasForm):
    key = KERAS_FILE_KEY
    name = "Keras"
    looks_for = "a .keras file"
    single_file = True
    checks_folder = False
    fetch_query = ""
    served_query = ("keras-format", "keras")
    suffix = ".keras"
    client_import = "import keras"
    caches: frozenset[str] = frozenset()

    def root_file(self, root_files: Collection[str]) -> str | None:
        return None  # one file, never found inside an archive

    def inspect_file(
        self, reader: BinaryIO, size: int, name: str, limits: ArchiveLimits
    ) -> dict[str, object]:
        model = inspect_keras_file(reader, size, limits, name)
        return {
            "format": self.key,
            "compression": "zip",
            "files": model.files,
            "directories": 0,
            "uncompressed_size": model.uncompressed_size,
            "root_file": "model.keras",
            "keras": model.as_json(),
        }

    def check_folder(self, folder: Path) -> dict[str, object]:
        return {}

    def usage(self, mirror_handle: str) -> dict[str, str]:
        url = f"{mirror_handle}?keras-format=keras"
        return {"keras": f'keras.saving.load_model(keras.utils.get_file("model.keras", "{url}"))'}


def keras_classes(archive: Mapping[str, object]) -> GraphOps | str:
    """The classes and functions the model's config names, as read when it was checked,
    and the Keras that wrote it."""
    facts = archive.get("keras")
    if not isinstance(facts, dict):
        return "its facts name no Keras classes (checked before this release)"
    model = KerasModel.from_json(facts)
    return GraphOps(model.classes, model.keras_version)


KERAS_PRESET = KerasPreset()
KERAS_FILE = KerasFile()
