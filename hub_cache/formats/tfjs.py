"""TF.js, the browsers' format: a folder of `model.json` and weight shards, fetched from
tfhub.dev as `?tfjs-format=compressed` (a tar.gz of the folder) and served to
`@tensorflow/tfjs` file by file (`<model>/model.json?tfjs-format=file`, then each shard
by the path model.json gives it). The archive is checked as any model archive, then the
extracted folder as tfjs reads it (tfjs_model.py); each file is kept as a blob of its
own, so a browser's request is answered from the store like any blob."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import BinaryIO

from hub_cache.errors import ArchiveRejected
from hub_cache.formats.base import KAGGLEHUB_CACHE, GraphOps, RuntimeKind
from hub_cache.formats.blob_files import served_file
from hub_cache.formats.tfjs_model import MODEL_JSON, TfjsModel, inspect_tfjs
from hub_cache.formats.tfjs_signature import tfjs_contract
from hub_cache.limits import ArchiveLimits
from mirror.core.contracts import Contract
from mirror.core.model_forms import TFJS
from mirror.core.storage import BlobStore
from mirror.core.upstream import MAX_PAGE

FILE_QUERY = ("tfjs-format", "file")  # how tfjs asks for model.json and each shard

# TF.js runs in a browser or Node.js, never in a Python environment's closure: no
# environment is a runtime of it, and the matrix says so rather than failing it.
NOT_CHECKED = "browser/Node.js (TF.js): not checked against a Python environment"


class TfJs:
    key = TFJS
    name = "TF.js"
    looks_for = "model.json"
    single_file = False
    checks_folder = True
    fetch_query = "tfjs-format=compressed"
    served_query = ("tfjs-format", "compressed")
    suffix = ".tar.gz"
    client_import = 'import * as tf from "@tensorflow/tfjs";'
    runtime: RuntimeKind | None = None  # a browser or Node.js runs it (NOT_CHECKED)
    serving_platform: str | None = None
    caches = frozenset({KAGGLEHUB_CACHE})  # kagglehub extracts Kaggle's tfJs archives

    def root_file(self, root_files: Collection[str]) -> str | None:
        return MODEL_JSON if MODEL_JSON in root_files else None

    def inspect_file(
        self, reader: BinaryIO, size: int, name: str, limits: ArchiveLimits
    ) -> dict[str, object]:
        raise ArchiveRejected(f"{name}: a TF.js model is a folder, archived; not one file")

    def check_folder(self, folder: Path) -> dict[str, object]:
        return {"tfjs": read_folder(folder).as_json()}

    def ops(
        self, store: BlobStore, sha256: str, archive: Mapping[str, object], max_bytes: int
    ) -> GraphOps | str:
        return NOT_CHECKED

    def contract(
        self, store: BlobStore, sha256: str, archive: Mapping[str, object], max_bytes: int
    ) -> Contract | str:
        kept = served_file(archive, MODEL_JSON)
        if kept is None:
            return f"its {MODEL_JSON} is not kept as a file of its own"
        with store.open_blob(kept) as reader:
            return tfjs_contract(reader.read(MAX_PAGE + 1))

    def load_probe(self, root_file: str) -> Path | str:
        return NOT_CHECKED

    def usage(self, mirror_handle: str) -> dict[str, str]:
        return {"tfjs": f'await tf.loadGraphModel("{mirror_handle}", {{fromTFHub: true}})'}


def read_folder(folder: Path) -> TfjsModel:
    """The extracted folder as tfjs reads it: model.json (bounded as index pages are)
    and every file's size."""
    files: dict[str, int] = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root, name)
            files[path.relative_to(folder).as_posix()] = path.stat().st_size
    size = files.get(MODEL_JSON)
    if size is None:
        raise ArchiveRejected(f"no {MODEL_JSON} at the archive root")
    if size > MAX_PAGE:
        raise ArchiveRejected(f"{MODEL_JSON} is {size} bytes, over {MAX_PAGE}")
    return inspect_tfjs((folder / MODEL_JSON).read_bytes(), files)


TFJS_FORMAT = TfJs()
