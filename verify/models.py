"""Deep model checks: extract each mirrored model and load it with TensorFlow.

A model that loads gets its signatures recorded in its manifest (and shown on its page);
one that does not is flagged, never deleted: the operator decides.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

from hub_cache.archive import ArchiveRejected, inspect_archive
from hub_cache.hub_sync import caps
from hub_cache.models import ModelManifest, load_models, update_model
from mirror.core.children import die_with_parent, python_module, scrubbed_env
from mirror.core.config import Config
from mirror.core.scratch import scratch_dir
from mirror.core.storage import BlobNotFound, BlobStore


@dataclass
class ModelCheck:
    path: str
    handle: str
    ok: bool
    detail: str

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def _tail(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " ".join(lines[-2:])[-400:] or "TensorFlow gave no message"


def check_model(config: Config, store: BlobStore, model: ModelManifest) -> ModelCheck:
    with scratch_dir("tfmirror-model-") as folder:
        try:
            with store.open_blob(model.sha256) as reader:
                facts = inspect_archive(reader, model.size, caps(config.hub), extract_to=folder)
        except (ArchiveRejected, BlobNotFound) as exc:
            return ModelCheck(model.path, model.handle, False, str(exc))
        if facts.root_file == "tfhub_module.pb":
            return ModelCheck(model.path, model.handle, True, "TF1 hub module: not loaded")
        proc = subprocess.run(
            [*python_module("verify.model_probe"), str(folder)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            env=scrubbed_env(TF_CPP_MIN_LOG_LEVEL="3"),
            preexec_fn=die_with_parent,
            start_new_session=True,  # a terminal's Ctrl-C is for tfmirror, which stops it
        )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("SIGNATURES ")), None)
    if proc.returncode != 0 or line is None:
        return ModelCheck(model.path, model.handle, False, f"does not load: {_tail(proc.stderr)}")
    signatures = json.loads(line[len("SIGNATURES ") :])

    def record(current: ModelManifest) -> bool:
        # Only onto the archive that was loaded: a sync may have published another.
        if current.sha256 != model.sha256 or current.signatures == signatures:
            return False
        current.signatures = signatures
        return True

    update_model(store, model.path, record)
    model.signatures = signatures
    names = ", ".join(sorted(signatures)) or "no signatures"
    return ModelCheck(model.path, model.handle, True, f"loads; signatures: {names}")


def check_models(config: Config, store: BlobStore) -> list[ModelCheck]:
    return [check_model(config, store, m) for m in load_models(store)]
