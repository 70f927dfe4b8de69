"""Deep model checks: extract each mirrored model, load it with each environment's
TensorFlow (its runtime, verify.runtimes) whose ops it needs are all there, and call its
serving signature on zeros, by its format's load probe (hub_cache.formats).

A model that loads gets its signatures recorded in its manifest (and shown on its page);
one that does not is flagged, never deleted: the operator decides. With no runtime (no
environment's closure holds a TensorFlow this machine can run) a model is not loaded and
says so, not flagged: that is the mirror host's limit, not the model's.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hub_cache.archive import inspect_archive
from hub_cache.compat_matrix import OK, Pair
from hub_cache.errors import ArchiveRejected
from hub_cache.hub_sync import caps
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
    return " ".join(lines[-2:])[-400:] or "TensorFlow gave no message"


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


def _host_loader() -> Loader | None:
    """tfmirror's own Python, where it has TensorFlow (a development install): the
    loader of last resort when no environment's runtime exists."""
    if importlib.util.find_spec("tensorflow") is None:
        return None
    return Loader("tfmirror's own Python", Path(sys.executable))


def check_model(
    config: Config, store: BlobStore, model: ModelManifest, runtimes: list[Loader]
) -> ModelCheck:
    """Load the model with each of `runtimes` (those whose TensorFlow has every op it uses)."""
    if not runtimes:
        return ModelCheck(
            model.path, model.handle, True, "not loaded: no environment's runtime can load it here"
        )
    model_format = model.model_format
    if model_format is not None and model_format.single_file:
        # Loaded from the file itself, not an extracted folder (no runtime does yet).
        reason = model_format.load_probe(str(model.archive.get("root_file", "")))
        return ModelCheck(model.path, model.handle, True, str(reason))
    with scratch_dir("tfmirror-model-") as folder:
        try:
            with store.open_blob(model.sha256) as reader:
                facts = inspect_archive(reader, model.size, caps(config.hub), extract_to=folder)
        except (ArchiveRejected, BlobNotFound) as exc:
            return ModelCheck(model.path, model.handle, False, str(exc))
        probe = facts.model_format.load_probe(facts.root_file)
        if isinstance(probe, str):
            return ModelCheck(model.path, model.handle, True, probe)
        runs = {rt.name: _probe(rt, probe, folder) for rt in runtimes}
    signatures: dict[str, object] = {}
    called = []
    for env, proc in runs.items():
        lines = proc.stdout.splitlines()
        line = next((ln for ln in lines if ln.startswith("SIGNATURES ")), None)
        if proc.returncode != 0 or line is None:
            detail = f"does not load in {env}: {_tail(proc.stderr)}"
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
    served = f"; serving_default called on zeros in {', '.join(called)}" if called else ""
    where = ", ".join(runs)
    return ModelCheck(
        model.path, model.handle, True, f"loads in {where}; signatures: {names}{served}"
    )


def check_models(config: Config, store: BlobStore, pairs: list[Pair]) -> list[ModelCheck]:
    """Each model in every runtime whose op check (`pairs`) found nothing missing."""
    fits: dict[str, list[str]] = {}
    for pair in pairs:
        if pair.status == OK:
            fits.setdefault(pair.sha256, []).append(pair.environment)
    found = {}
    for env in {e for envs in fits.values() for e in envs}:
        rt = existing_runtime(config, store, env)
        if isinstance(rt, Runtime):
            found[env] = Loader(env, rt.python, tuple(rt.libraries.values()))
    host = _host_loader() if not found else None
    fallback = [host] if host is not None else []
    return [
        check_model(
            config, store, m, [found[e] for e in fits.get(m.sha256, []) if e in found] or fallback
        )
        for m in load_models(store)
    ]
