"""TFLite (LiteRT), the edge devices' format: one `.tflite` FlatBuffer, fetched from
tfhub.dev with `?lite-format=tflite` and served to clients the same way. Its facts and
operator codes are read by a reader of its own (tflite_reader.py: every offset checked,
no TensorFlow in the mirror), kept in the manifest, and shown on the model's page."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import BinaryIO

from hub_cache.errors import ArchiveRejected
from hub_cache.formats.base import KAGGLEHUB_CACHE, GraphOps, RuntimeKind
from hub_cache.formats.blob_files import seekable_blob, served_file
from hub_cache.formats.litert_runtime import LITERT
from hub_cache.formats.probes import tflite_load
from hub_cache.formats.tflite_reader import TfliteModel, read_tflite, tflite_contract
from hub_cache.limits import ArchiveLimits
from mirror.core.contracts import Contract
from mirror.core.model_forms import TFLITE
from mirror.core.storage import BlobStore

MODEL_FILE = "model.tflite"  # the root file a manifest records for it
TFLITE_ARCHIVE_KEY = "tflite-archive"  # a manifest's name for Kaggle's archived form


class TfLite:
    key = TFLITE
    name = "TFLite"
    looks_for = "a .tflite file"
    single_file = True
    checks_folder = False
    fetch_query = "lite-format=tflite"
    served_query = ("lite-format", "tflite")
    suffix = ".tflite"
    client_import = "import urllib.request\nfrom ai_edge_litert.interpreter import Interpreter"
    runtime: RuntimeKind | None = LITERT
    serving_platform: str | None = None  # TF Serving serves no .tflite
    caches: frozenset[str] = frozenset()  # tensorflow_hub loads no .tflite

    def root_file(self, root_files: Collection[str]) -> str | None:
        # Not claimed inside an archive (Kaggle's tfLite archives): its bytes would
        # need checking there too, which the archive pass does not do yet.
        return None

    def inspect_file(
        self, reader: BinaryIO, size: int, name: str, limits: ArchiveLimits
    ) -> dict[str, object]:
        model = read_tflite(reader, size, name)
        return {
            "format": self.key,
            "compression": "none",
            "files": 1,
            "directories": 0,
            "uncompressed_size": size,
            "root_file": MODEL_FILE,
            "tflite": model.as_json(),
        }

    def check_folder(self, folder: Path) -> dict[str, object]:
        return {}

    def ops(
        self, store: BlobStore, sha256: str, archive: Mapping[str, object], max_bytes: int
    ) -> GraphOps | str:
        try:
            with seekable_blob(store, sha256) as (reader, size):
                model = read_tflite(reader, size, MODEL_FILE)
        except ArchiveRejected as exc:
            return str(exc)
        return GraphOps(operator_names(model))

    def contract(
        self, store: BlobStore, sha256: str, archive: Mapping[str, object], max_bytes: int
    ) -> Contract | str:
        return blob_contract(store, sha256, MODEL_FILE)

    def load_probe(self, root_file: str) -> Path | str:
        return Path(tflite_load.__file__)

    def usage(self, mirror_handle: str) -> dict[str, str]:
        url = f"{mirror_handle}?lite-format=tflite"
        return {"litert": f'Interpreter(model_content=urllib.request.urlopen("{url}").read())'}


def operator_names(model: TfliteModel) -> frozenset[str]:
    """Every operator code, as LiteRT names them: builtins by name, custom and Flex ops
    by their custom code."""
    return model.builtin_ops | model.custom_ops | model.flex_ops


def blob_contract(store: BlobStore, sha256: str, name: str) -> Contract | str:
    """The signatures of the .tflite file kept as blob `sha256`, as LiteRT reads them."""
    try:
        with seekable_blob(store, sha256) as (reader, size):
            return tflite_contract(reader, size, name)
    except ArchiveRejected as exc:
        return str(exc)


TFLITE_FORMAT = TfLite()


class TfLiteArchive:
    """A TFLite model as Kaggle Models serves every framework: a tar.gz of its files (one
    or more `.tflite`), which kagglehub extracts into its cache. Each `.tflite` inside is
    read as LiteRT reads it, after the archive checks."""

    key = TFLITE_ARCHIVE_KEY
    name = "archived TFLite"
    looks_for = "a .tflite file"
    single_file = False
    checks_folder = True
    fetch_query = "lite-format=tflite"
    served_query = ("lite-format", "tar.gz")
    suffix = ".tar.gz"
    client_import = TfLite.client_import
    runtime: RuntimeKind | None = LITERT
    serving_platform: str | None = None
    caches = frozenset({KAGGLEHUB_CACHE})

    def root_file(self, root_files: Collection[str]) -> str | None:
        return next((f for f in sorted(root_files) if f.lower().endswith(".tflite")), None)

    def inspect_file(
        self, reader: BinaryIO, size: int, name: str, limits: ArchiveLimits
    ) -> dict[str, object]:
        raise ArchiveRejected(f"{name}: an archived TFLite model is a tar.gz; not one file")

    def check_folder(self, folder: Path) -> dict[str, object]:
        models = {}
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name.lower().endswith(".tflite"):
                name = path.relative_to(folder).as_posix()
                with path.open("rb") as f:
                    models[name] = read_tflite(f, path.stat().st_size, name).as_json()
        return {"tflite_files": models}

    def ops(
        self, store: BlobStore, sha256: str, archive: Mapping[str, object], max_bytes: int
    ) -> GraphOps | str:
        # Each .tflite inside was read as LiteRT reads it when the archive was checked.
        files = archive.get("tflite_files")
        if not isinstance(files, dict) or not files:
            return "its archive's facts name no .tflite file (checked before this release)"
        models = [TfliteModel.from_json(doc) for doc in files.values() if isinstance(doc, dict)]
        return GraphOps(frozenset().union(*(operator_names(m) for m in models)))

    def contract(
        self, store: BlobStore, sha256: str, archive: Mapping[str, object], max_bytes: int
    ) -> Contract | str:
        # The .tflite that marks the archive; the others are read by check_folder only.
        root_file = str(archive.get("root_file", ""))
        kept = served_file(archive, root_file)
        if kept is None:
            return f"{root_file or 'its .tflite'} is not kept as a file of its own"
        return blob_contract(store, kept, root_file)

    def load_probe(self, root_file: str) -> Path | str:
        return TFLITE_FORMAT.load_probe(root_file)

    def usage(self, mirror_handle: str) -> dict[str, str]:
        return {}


TFLITE_ARCHIVE = TfLiteArchive()
