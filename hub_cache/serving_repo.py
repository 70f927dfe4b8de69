"""A TF Serving model repository from the mirror's models: `DIR/<name>/<version>/` (the
SavedModel) and `DIR/models.config` (a `model_config_list`).

TF Serving polls its base paths and loads a version folder as soon as it appears, half
written or not (tensorflow/serving#1086): each version is extracted and checked like a
prefetch (the archive re-hashed against its sha256 as it is read, every member checked)
into a hidden sibling, then renamed into place in one step. Its S3 filesystem has been
broken since 2.7 (serving#1963): a local folder written this way is the reliable path.
Rerunning changes nothing unless a model did: what each version holds is recorded
beside it (`DIR/<name>/.tfmirror.json`, which TF Serving ignores: not a number).
models.config names exactly the models this run exported.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hub_cache.archive import ArchiveRejected, Caps, inspect_archive
from hub_cache.models import ModelManifest
from hub_cache.prefetch import drop_old_copies, swap_in
from mirror.core.storage import BlobStore

CONFIG = "models.config"
RECORD = ".tfmirror.json"
_NOT_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Placement:
    manifest: ModelManifest
    name: str
    version: int


@dataclass(frozen=True)
class Exported:
    handle: str
    name: str
    version: int
    status: str  # written | unchanged | refused | removed
    detail: str = ""


def serving_version(path: str) -> int:
    """The handle's version (its last segment) as TF Serving's integer; 1 if it has none."""
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return int(last) if last.isdigit() and 0 < int(last) < 2**63 else 1


def serving_name(path: str, configured: str = "") -> str:
    """`serving_name` from the config, else the handle's path without its version:
    google/imagenet/mobilenet_v2/feature_vector/5 -> google_imagenet_mobilenet_v2_feature_vector."""
    if configured:
        return configured
    parts = path.strip("/").split("/")
    if parts and parts[-1].isdigit():
        parts = parts[:-1]
    return _NOT_NAME.sub("_", "_".join(parts)).strip("_") or "model"


class _Hashing:
    """A reader that hashes what passes through it (the archive, as extracted)."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner = inner
        self.digest = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.inner.read(size)
        self.digest.update(chunk)
        self.count += len(chunk)
        return chunk

    def rest(self) -> None:
        while self.read(1024 * 1024):
            pass


def _record(folder: Path) -> dict[str, str]:
    try:
        doc = json.loads((folder / RECORD).read_text())
        return {str(k): str(v) for k, v in doc.get("versions", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _extract(store: BlobStore, manifest: ModelManifest, into: Path, caps: Caps) -> None:
    with store.open_blob(manifest.sha256) as raw:
        reader = _Hashing(raw)
        inspect_archive(reader, manifest.size, caps, extract_to=into)  # type: ignore[arg-type]
        reader.rest()
    if reader.count != manifest.size or reader.digest.hexdigest() != manifest.sha256:
        raise ArchiveRejected(
            f"the stored archive is {reader.count} bytes with sha256 "
            f"{reader.digest.hexdigest()}, not what its manifest says: run tfmirror verify"
        )


def _place(store: BlobStore, out: Path, p: Placement, caps: Caps) -> Exported:
    home = out / p.name
    home.mkdir(parents=True, exist_ok=True)
    drop_old_copies(home)  # versions an earlier run exchanged out, once readers are done
    dest = home / str(p.version)
    record = _record(home)
    if record.get(str(p.version)) == p.manifest.sha256 and dest.is_dir():
        return Exported(p.manifest.handle, p.name, p.version, "unchanged")
    staging = home / f".{p.version}.{uuid.uuid4().hex[:8]}.tmp"
    staging.mkdir()
    try:
        _extract(store, p.manifest, staging, caps)
        swap_in(staging, dest)
    except ArchiveRejected as exc:
        return Exported(p.manifest.handle, p.name, p.version, "refused", str(exc))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    record[str(p.version)] = p.manifest.sha256
    _write_atomically(home / RECORD, json.dumps({"versions": record}, indent=1))
    return Exported(p.manifest.handle, p.name, p.version, "written")


def _prune(out: Path, name: str, keep: int) -> list[Exported]:
    """The oldest versions beyond `keep`: renamed out of TF Serving's sight, then removed."""
    home = out / name
    record = _record(home)
    versions = sorted((int(v) for v in record if v.isdigit()), reverse=True)
    removed = []
    for version in versions[keep:]:
        folder = home / str(version)
        if folder.is_dir():
            aside = home / f".{version}.{uuid.uuid4().hex[:8]}.old"
            os.rename(folder, aside)
            shutil.rmtree(aside, ignore_errors=True)
        record.pop(str(version), None)
        removed.append(Exported("", name, version, "removed"))
    if removed:
        _write_atomically(home / RECORD, json.dumps({"versions": record}, indent=1))
    return removed


def render_config(out: Path, names: set[str]) -> str:
    """models.config for the models of this export (`names`), each version it keeps."""
    lines = ["model_config_list {"]
    for home in sorted(out / name for name in names):
        versions = sorted(int(v) for v in _record(home) if v.isdigit() and (home / v).is_dir())
        if not versions:
            continue
        lines += [
            "  config {",
            f"    name: {json.dumps(home.name)}",
            f"    base_path: {json.dumps(str(home.resolve()))}",
            '    model_platform: "tensorflow"',
            "    model_version_policy {",
            "      specific {",
            *[f"        versions: {v}" for v in versions],
            "      }",
            "    }",
            "  }",
        ]
    return "\n".join([*lines, "}"]) + "\n"


def export_serving(
    store: BlobStore,
    out: Path,
    placements: list[Placement],
    caps: Caps,
    keep: int,
    refuse: Callable[[ModelManifest], str | None] = lambda _: None,
) -> list[Exported]:
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for placement in placements:
        why = refuse(placement.manifest)
        if why is not None:
            m = placement.manifest
            done.append(Exported(m.handle, placement.name, placement.version, "refused", why))
            continue
        done.append(_place(store, out, placement, caps))
    for name in sorted({p.name for p in placements}):
        done += _prune(out, name, keep)
    # Exactly what this run exported: a model refused now (or left out) is dropped from
    # what TF Serving loads, its folders left for the operator.
    served = {e.name for e in done if e.status in ("written", "unchanged")}
    config = render_config(out, served)
    current = out / CONFIG
    if not current.is_file() or current.read_text() != config:
        _write_atomically(current, config)
    return done
