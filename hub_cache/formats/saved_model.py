"""SavedModel, TF Hub's own format: `saved_model.pb` (or `.pbtxt`) at the archive root,
or a TF1 hub module's `tfhub_module.pb`. Its ops are read from the graph without
TensorFlow (saved_model_ops.py), checked against an environment's TensorFlow, loaded
there with tf.saved_model.load (probes/saved_model_load.py), served by TF Serving as
`tensorflow`, and prefetched as the folder tensorflow_hub and kagglehub extract."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import BinaryIO

from hub_cache.errors import ArchiveRejected, NotASavedModel
from hub_cache.formats.base import KAGGLEHUB_CACHE, TFHUB_CACHE, GraphOps, RuntimeKind
from hub_cache.formats.probes import saved_model_load
from hub_cache.formats.saved_model_ops import archive_ops, archived_graph
from hub_cache.formats.saved_model_signatures import saved_model_contract
from hub_cache.formats.tensorflow_runtime import TENSORFLOW
from hub_cache.limits import ArchiveLimits
from mirror.core.contracts import Contract
from mirror.core.model_forms import SAVEDMODEL
from mirror.core.storage import BlobStore

ROOT_FILES = ("saved_model.pb", "saved_model.pbtxt", "tfhub_module.pb")  # first found wins
TF1_HUB_MODULE = "tfhub_module.pb"


class SavedModel:
    key = SAVEDMODEL
    name = "SavedModel"
    looks_for = "saved_model.pb, saved_model.pbtxt or tfhub_module.pb"
    single_file = False
    checks_folder = False
    fetch_query = "tf-hub-format=compressed"
    served_query = ("tf-hub-format", "compressed")
    suffix = ".tar.gz"
    runtime: RuntimeKind | None = TENSORFLOW
    serving_platform: str | None = "tensorflow"
    caches = frozenset({TFHUB_CACHE, KAGGLEHUB_CACHE})
    client_import = "import tensorflow_hub as hub"

    def root_file(self, root_files: Collection[str]) -> str | None:
        return next((f for f in ROOT_FILES if f in root_files), None)

    def inspect_file(
        self, reader: BinaryIO, size: int, name: str, limits: ArchiveLimits
    ) -> dict[str, object]:
        raise ArchiveRejected(f"{name}: a SavedModel is a folder, archived; not one file")

    def check_folder(self, folder: Path) -> dict[str, object]:
        return {}

    def ops(
        self, store: BlobStore, sha256: str, archive: Mapping[str, object], max_bytes: int
    ) -> GraphOps | str:
        if archive.get("root_file") == TF1_HUB_MODULE:
            return "a TF1 hub module: TensorFlow 2 loads it through hub.load, not checked"
        try:
            return archive_ops(store, sha256, max_bytes)
        except NotASavedModel as exc:
            return str(exc)

    def contract(
        self, store: BlobStore, sha256: str, archive: Mapping[str, object], max_bytes: int
    ) -> Contract | str:
        root_file = archive.get("root_file")
        if root_file == TF1_HUB_MODULE:
            return "a TF1 hub module: its signatures are not read"
        if root_file != "saved_model.pb":
            return f"{root_file}: only a binary saved_model.pb is read"
        try:
            return saved_model_contract(archived_graph(store, sha256, max_bytes))
        except NotASavedModel as exc:
            return str(exc)

    def load_probe(self, root_file: str) -> Path | str:
        if root_file == TF1_HUB_MODULE:
            return "TF1 hub module: not loaded"
        return Path(saved_model_load.__file__)

    def usage(self, mirror_handle: str) -> dict[str, str]:
        return {"hub_load": f'hub.load("{mirror_handle}")'}


SAVED_MODEL = SavedModel()
