"""Deep model checks: load each mirrored model with each environment's runtime of its
format's kind (verify.runtimes: TensorFlow for a SavedModel, LiteRT for a .tflite, Keras
for a .keras file or a KerasHub preset) that
has every op it uses, and call it on zeros, by its format's load probe
(hub_cache.formats): an archive is extracted first, a single file is loaded as it is.

A model that loads gets its signatures recorded in its manifest (and shown on its page);
one that does not is flagged, never deleted: the operator decides. With no runtime (no
environment's closure holds a runtime this machine can run) a model is not loaded and
says so, not flagged: that is the mirror host's limit, not the model's.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hub_cache.archive import inspect_archive
from hub_cache.compat_matrix import OK, Pair
from hub_cache.errors import ArchiveRejected
from hub_cache.formats.base import RuntimeKind
from hub_cache.limits import caps
from hub_cache.models import ModelManifest, load_models, update_model
from mirror.core.children import die_with_parent, scrubbed_env
from mirror.core.config import Config
from mirror.core.errors import BlobNotFound
from mirror.core.scratch import scratch_dir
from mirror.core.storage import BlobStore
from verify.runtimes import Runtime, existing_runtime


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
    return " ".join(lines[-2:])[-400:] or "the runtime gave no message"


def _probe(loader: Loader, probe: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run the format's load probe in the loader's Python (which has no tfmirror)."""
    return subprocess.run(
        [str(loader.python), str(probe), str(folder), *loader.libraries],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=scrubbed_env(TF_CPP_MIN_LOG_LEVEL="3"),
        preexec_fn=die_with_parent,
        start_new_session=True,  # a terminal's Ctrl-C is for tfmirror, which stops it
    )


@dataclass(frozen=True)
class Loader:
    """A Python with TensorFlow to load models in, and what to call it in reports."""

    name: str
    python: Path
    libraries: tuple[str, ...] = ()  # op library modules to import before a load


def _host_loader(kind: RuntimeKind) -> Loader | None:
    """tfmirror's own Python, where it has the kind's framework (a development install):
    the loader of last resort when no environment's runtime exists."""
    if not any(importlib.util.find_spec(module) for module in kind.modules):
        return None
    return Loader("tfmirror's own Python", Path(sys.executable))


def check_model(
    config: Config, store: BlobStore, model: ModelManifest, runtimes: list[Loader]
) -> ModelCheck:
    """Load the model with each of `runtimes` (those that have every op it uses)."""
    if not runtimes:
        return ModelCheck(
            model.path, model.handle, True, "not loaded: no environment's runtime can load it here"
        )
    model_format = model.model_format
    with scratch_dir("tfmirror-model-") as folder:
        if model_format is not None and model_format.single_file:
            # Loaded from the file itself, as its client loads it: the blob's own file.
            probe = model_format.load_probe(str(model.archive.get("root_file", "")))
            target = _blob_file(store, model, folder)
        else:
            try:
                with store.open_blob(model.sha256) as reader:
                    facts = inspect_archive(reader, model.size, caps(config.hub), extract_to=folder)
            except (ArchiveRejected, BlobNotFound) as exc:
                return ModelCheck(model.path, model.handle, False, str(exc))
            probe, target = facts.model_format.load_probe(facts.root_file), folder
        if isinstance(probe, str):
            return ModelCheck(model.path, model.handle, True, probe)
        if isinstance(target, str):
            return ModelCheck(model.path, model.handle, False, target)
        runs = {rt.name: _probe(rt, probe, target) for rt in runtimes}
    signatures: dict[str, object] = {}
    called = []
    for env, proc in runs.items():
        lines = proc.stdout.splitlines()
        line = next((ln for ln in lines if ln.startswith("SIGNATURES ")), None)
        if proc.returncode != 0 or line is None:
            # Loaded (its signatures printed) and then failed: its run, not its load.
            failed = "fails when called on zeros" if line is not None else "does not load"
            detail = f"{failed} in {env}: {_tail(proc.stderr)}"
            return ModelCheck(model.path, model.handle, False, detail)
        signatures = json.loads(line[len("SIGNATURES ") :])
        if any(ln.startswith("CALLED ") for ln in lines):
            called.append(env)

    def record(current: ModelManifest) -> bool:
        # Only onto the archive that was loaded: a sync may have published another.
        if current.sha256 != model.sha256 or current.signatures == signatures:
            return False
        current.signatures = signatures
        return True

    update_model(store, model.path, record)
    model.signatures = signatures
    names = ", ".join(sorted(signatures)) or "no signatures"
    what = "serving_default" if "serving_default" in signatures else "the model"
    served = f"; {what} called on zeros in {', '.join(called)}" if called else ""
    where = ", ".join(runs)
    return ModelCheck(
        model.path, model.handle, True, f"loads in {where}; signatures: {names}{served}"
    )


def _blob_file(store: BlobStore, model: ModelManifest, scratch: Path) -> Path | str:
    """The model's blob as a file under its own name (Keras reads a file by its
    `.keras` suffix): a link to the store's, or a copy where it keeps none on this disk
    (S3); or why there is none."""
    copy = scratch / Path(str(model.archive.get("root_file", "model"))).name
    local = store.local_path(model.sha256)
    if local is not None:
        copy.symlink_to(local)
        return copy
    try:
        with store.open_blob(model.sha256) as reader, copy.open("wb") as out:
            shutil.copyfileobj(reader, out, 1024 * 1024)
    except BlobNotFound as exc:
        return str(exc)
    return copy


def _kind(model: ModelManifest) -> RuntimeKind | None:
    return model.model_format.runtime if model.model_format is not None else None


def check_models(config: Config, store: BlobStore, pairs: list[Pair]) -> list[ModelCheck]:
    """Each model in every runtime of its format's kind whose check (`pairs`) found
    nothing missing; where no environment has a runtime, tfmirror's own Python if it
    has the framework."""
    fits: dict[str, list[str]] = {}
    for pair in pairs:
        if pair.status == OK:
            fits.setdefault(pair.sha256, []).append(pair.environment)
    loaders: dict[tuple[str, str], Loader | None] = {}

    def loader(env: str, kind: RuntimeKind) -> Loader | None:
        if (env, kind.name) not in loaders:
            rt = existing_runtime(config, store, env, kind=kind)
            loaders[env, kind.name] = (
                Loader(env, rt.python, tuple(rt.libraries.values()))
                if isinstance(rt, Runtime)
                else None
            )
        return loaders[env, kind.name]

    models = load_models(store)
    chosen: dict[str, list[Loader]] = {}
    for m in models:
        kind = _kind(m)
        ready = [loader(e, kind) for e in fits.get(m.sha256, [])] if kind is not None else []
        chosen[m.path] = [rt for rt in ready if rt is not None]
    anywhere = any(chosen.values())
    checks = []
    for m in models:
        kind = _kind(m)
        host = _host_loader(kind) if kind is not None and not anywhere else None
        checks.append(check_model(config, store, m, chosen[m.path] or ([host] if host else [])))
    return checks
