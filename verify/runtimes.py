"""Runtimes: each environment's own TensorFlow, LiteRT interpreter or Keras, installed
from the mirror's own wheels, so the mirror can say which model loads where before a
serving node, a device or a notebook finds out. What makes a runtime and how what it
registers is listed is its kind's to say (a RuntimeKind, in hub_cache.formats:
tensorflow_runtime, litert_runtime, keras_runtime).

For an environment whose closure, on a target this machine can run, holds a kind's
framework: a venv in `[hub] runtimes_dir`, named by the environment, the target and the
hash of the closure (the same closure is never built twice; a new one replaces it), with
the closure installed by uv with `--require-hashes` from a folder of the store's verified
blobs, offline (inside `unshare -n` where the host allows it), then what the kind
registers recorded in a file of the kind's own: TensorFlow's ops and those op libraries
in the closure register on import (tensorflow-text, ...), each credited to its package;
LiteRT's builtin ops and whether Flex ops run; Keras's classes. A closure with several
kinds is one venv.

Not through the index: a runtime is needed where no index runs (`tfmirror hub check`,
the hub sync's gate), and the blob files are the bytes the index serves, by sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from hub_cache.formats.base import Registered, RuntimeKind
from hub_cache.formats.tensorflow_runtime import TENSORFLOW
from mirror.core.children import die_with_parent
from mirror.core.config import Config, host_target
from mirror.core.errors import BlobNotFound
from mirror.core.storage import BlobStore
from mirror.pypi.interpreters import find_interpreter
from mirror.pypi.lockfile import render_lock
from mirror.pypi.manifest import Manifest, load_all
from mirror.pypi.resolve import Role, platforms_for, uv_binary
from verify import netns
from verify.airgap import pip_env
from verify.errors import RuntimeUnavailable

RUNTIME = "runtime.json"  # TensorFlow's, written last: a folder without one is not built
# What a runtime's list_ops said besides its ops, kept as it said it (LiteRT's Flex check).
_SAID = ("name", "version", "ops", "providers", "failed", "libraries")


def runtime_file(kind: RuntimeKind) -> str:
    """The file a kind's runtime is recorded in; the venv is shared by every kind its
    closure has, TensorFlow's keeps the name it always had."""
    return RUNTIME if kind is TENSORFLOW else f"runtime-{kind.name}.json"


@dataclass(frozen=True)
class Runtime:
    environment: str
    target: str
    closure: str  # sha256 over the closure's file names and sha256s
    folder: Path
    version: str  # of the kind's framework ("2.21.0")
    ops: frozenset[str]
    providers: dict[str, str] = field(default_factory=dict)  # op -> package that adds it
    failed: dict[str, str] = field(default_factory=dict)  # op library -> why it did not import
    # op libraries that imported: package -> module (a model load imports them first)
    libraries: dict[str, str] = field(default_factory=dict)
    name: str = "TensorFlow"  # the framework, as messages name it ("ai-edge-litert")
    extra: dict[str, object] = field(default_factory=dict)  # what else list_ops said

    @property
    def python(self) -> Path:
        return self.folder / "venv" / "bin" / "python"

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    def registered(self, providers: dict[str, str]) -> Registered:
        """What it registers, for its kind's check; `providers`: every runtime's."""
        return Registered(self.label, self.version, self.ops, self.failed, self.extra, providers)

    def to_json(self) -> dict[str, object]:
        return {
            "environment": self.environment,
            "target": self.target,
            "closure": self.closure,
            "name": self.name,
            "version": self.version,
            "ops": sorted(self.ops),
            "providers": self.providers,
            "failed": self.failed,
            "libraries": self.libraries,
            "extra": self.extra,
        }

    @classmethod
    def read(cls, path: Path) -> Runtime:
        doc = json.loads(path.read_text())
        return cls(
            doc["environment"],
            doc["target"],
            doc["closure"],
            path.parent,
            str(doc.get("version", doc.get("tensorflow", ""))),  # "tensorflow": before kinds
            frozenset(doc["ops"]),
            dict(doc.get("providers", {})),
            dict(doc.get("failed", {})),
            dict(doc.get("libraries", {})),
            str(doc.get("name", "TensorFlow")),
            dict(doc.get("extra", {})),
        )


@dataclass(frozen=True)
class NoRuntime:
    environment: str
    reason: str


def closure_hash(manifest: Manifest) -> str:
    rows = sorted(f"{w.filename} {w.sha256}" for w in manifest.files if w.role is Role.CLOSURE)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def _has(kind: RuntimeKind, manifest: Manifest) -> bool:
    return any(w.project.lower().replace("_", "-") in kind.packages for w in manifest.files)


def _runnable(manifest: Manifest) -> bool:
    return manifest.target.platform in platforms_for(host_target().platform)


def runtime_manifest(
    store: BlobStore, environment: str, kind: RuntimeKind = TENSORFLOW
) -> Manifest | NoRuntime:
    """The environment's closure to build a runtime of: its first target that holds
    the kind's framework (TensorFlow) and that this machine can run."""
    manifests = load_all(store, environment)
    if not manifests:
        return NoRuntime(environment, "nothing is mirrored for it yet")
    holding = [m for m in manifests if _has(kind, m)]
    if not holding:
        return NoRuntime(environment, kind.absent)
    for manifest in holding:
        if _runnable(manifest) and find_interpreter(manifest.target) is not None:
            return manifest
    targets = ", ".join(m.target.id for m in holding)
    return NoRuntime(environment, f"no target this machine can run ({targets})")


def _folder(config: Config, manifest: Manifest) -> Path:
    name = f"{manifest.environment}-{manifest.target.id}-{closure_hash(manifest)[:16]}"
    return config.hub.runtimes_dir / name


def existing_runtime(
    config: Config,
    store: BlobStore,
    environment: str,
    build: bool = False,
    kind: RuntimeKind = TENSORFLOW,
) -> Runtime | NoRuntime:
    """The environment's runtime of `kind` if it is built for its closure as committed
    now; with `build`, built now if it is not (in the venv another kind built, if any)."""
    manifest = runtime_manifest(store, environment, kind)
    if isinstance(manifest, NoRuntime):
        return manifest
    folder = _folder(config, manifest)
    if (folder / runtime_file(kind)).is_file():
        return Runtime.read(folder / runtime_file(kind))
    if not build:
        return NoRuntime(environment, "its runtime is not built yet (tfmirror hub check)")
    try:
        if _installed(folder):
            return _list_ops(kind, manifest, folder)
        return _build(config, store, manifest, kind)
    except RuntimeUnavailable as exc:
        return NoRuntime(environment, str(exc))


def _installed(folder: Path) -> bool:
    """A venv with the closure installed: some kind's runtime was recorded in it."""
    return folder.is_dir() and any(folder.glob("runtime*.json"))


def _run(command: list[str], cwd: Path, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """Offline: inside a network namespace with nothing in it, where the host allows."""
    if netns.can_unshare():
        command = netns.wrap(command, [])
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=pip_env(UV_NO_PROGRESS="1", UV_PYTHON_DOWNLOADS="never", TF_CPP_MIN_LOG_LEVEL="3"),
        cwd=cwd,
        timeout=timeout,
        check=False,
        preexec_fn=die_with_parent,
        start_new_session=True,  # a terminal's Ctrl-C is for tfmirror, which stops it
    )


def _why(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    return " ".join(lines[-3:])[-500:] or f"exit {proc.returncode} with no message"


def _wheelhouse(store: BlobStore, manifest: Manifest, into: Path) -> None:
    """The closure's wheels under their file names: links to the store's blob files,
    or copies where the store has none on this disk (S3)."""
    into.mkdir()
    for wheel in manifest.files:
        if wheel.role is not Role.CLOSURE:
            continue
        target = into / wheel.filename
        local = store.local_path(wheel.sha256)
        if local is not None:
            target.symlink_to(local)
            continue
        try:
            with store.open_blob(wheel.sha256) as reader, open(target, "wb") as out:
                shutil.copyfileobj(reader, out, 1024 * 1024)
        except BlobNotFound:
            raise RuntimeUnavailable(
                f"{wheel.filename}: its blob is missing from the store"
            ) from None


def _build(config: Config, store: BlobStore, manifest: Manifest, kind: RuntimeKind) -> Runtime:
    folder = _folder(config, manifest)
    interpreter = find_interpreter(manifest.target)
    if interpreter is None:
        raise RuntimeUnavailable(f"no Python {manifest.target.python} on this machine")
    config.hub.runtimes_dir.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    staging.mkdir()
    try:
        _wheelhouse(store, manifest, staging / "wheels")
        (staging / "lock.txt").write_text(render_lock(manifest, "(offline)"))
        uv = uv_binary()
        made = _run(
            [uv, "venv", "--no-config", "--quiet", "--python", interpreter.path, "venv"], staging
        )
        if made.returncode != 0:
            raise RuntimeUnavailable(f"uv venv: {_why(made)}")
        install = [
            uv, "pip", "install", "--no-config", "--quiet", "--no-cache", "--offline",
            "--python", "venv/bin/python", "--no-index", "--find-links", "wheels",
            "--require-hashes", "--no-deps", "-r", "lock.txt",
        ]  # fmt: skip
        done = _run(install, staging)
        if done.returncode != 0:
            raise RuntimeUnavailable(f"installing the closure: {_why(done)}")
        shutil.rmtree(staging / "wheels")
        built = _list_ops(kind, manifest, staging)
        try:
            os.rename(staging, folder)
        except OSError:
            if not _installed(folder):
                raise
            # Another build of the same closure finished first: its venv is this one.
            shutil.rmtree(staging, ignore_errors=True)
            marker = folder / runtime_file(kind)
            return Runtime.read(marker) if marker.is_file() else _list_ops(kind, manifest, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _drop_older(config, manifest, folder)
    return replace(built, folder=folder)


def _list_ops(kind: RuntimeKind, manifest: Manifest, folder: Path) -> Runtime:
    """Run the kind's list_ops in the venv in `folder` and record what it found there."""
    libraries = json.dumps(dict(kind.op_libraries))
    probe = _run(["venv/bin/python", "-c", kind.list_ops, libraries], folder, 600)
    line = next((ln for ln in probe.stdout.splitlines() if ln.startswith("RUNTIME ")), None)
    if probe.returncode != 0 or line is None:
        raise RuntimeUnavailable(f"importing {kind.name}: {_why(probe)}")
    found = json.loads(line[len("RUNTIME ") :])
    built = Runtime(
        manifest.environment,
        manifest.target.id,
        closure_hash(manifest),
        folder,
        str(found["version"]),
        frozenset(found["ops"] or ()),
        dict(found["providers"]),
        dict(found["failed"]),
        dict(found["libraries"]),
        str(found["name"]),
        {k: v for k, v in found.items() if k not in _SAID},
    )
    marker = folder / runtime_file(kind)
    partial = marker.with_name(f".{marker.name}.{uuid.uuid4().hex[:8]}")
    partial.write_text(json.dumps(built.to_json(), indent=1))
    os.replace(partial, marker)  # whole or not at all
    return built


def _drop_older(config: Config, manifest: Manifest, kept: Path) -> None:
    """Runtimes of this environment and target for closures it no longer has."""
    prefix = f"{manifest.environment}-{manifest.target.id}-"
    for old in config.hub.runtimes_dir.glob(prefix + "*"):
        rest = old.name[len(prefix) :]
        if old != kept and len(rest) == 16 and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
