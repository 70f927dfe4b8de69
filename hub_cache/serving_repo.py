"""A TF Serving model repository from the mirror's models: `DIR/<name>/<version>/` (the
model folder as archived) and `DIR/models.config` (a `model_config_list` naming exactly
the models this run exported, each with its format's `model_platform`; a format TF
Serving cannot serve is refused). TF Serving loads a version folder as soon as it
appears, half written or not (tensorflow/serving#1086), so each version is extracted and
checked like a prefetch into a hidden sibling, then renamed into place in one step; its
S3 filesystem has been broken since 2.7 (serving#1963), so a local folder is the
reliable path. What each version holds is recorded beside it
(`DIR/<name>/.tfmirror.json`, which TF Serving ignores: not a number), so a rerun
changes nothing unless a model did; and since others may write in the folder too (TF
Serving's volume), nothing under it is followed through a link (hub_cache.held_folder)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hub_cache.archive import inspect_archive
from hub_cache.errors import ArchiveRejected
from hub_cache.held_folder import HeldFolder
from hub_cache.limits import ArchiveLimits
from hub_cache.models import ModelManifest
from hub_cache.prefetch import OLD_COPIES_KEPT
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
class ServingExport:
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


def _record(home: HeldFolder) -> dict[str, str]:
    try:
        doc = json.loads(home.read_text(RECORD) or "{}")
        return {str(k): str(v) for k, v in doc.get("versions", {}).items()}
    except (ValueError, AttributeError):
        return {}


def _write_record(home: HeldFolder, record: dict[str, str]) -> None:
    home.write_text(RECORD, json.dumps({"versions": record}, indent=1))


def _extract(store: BlobStore, manifest: ModelManifest, into: Path, caps: ArchiveLimits) -> None:
    with store.open_blob(manifest.sha256) as raw:
        reader = _Hashing(raw)
        inspect_archive(reader, manifest.size, caps, extract_to=into)  # type: ignore[arg-type]
        reader.rest()
    if reader.count != manifest.size or reader.digest.hexdigest() != manifest.sha256:
        raise ArchiveRejected(
            f"the stored archive is {reader.count} bytes with sha256 "
            f"{reader.digest.hexdigest()}, not what its manifest says: run tfmirror verify"
        )


def _place(store: BlobStore, home: HeldFolder, p: Placement, caps: ArchiveLimits) -> ServingExport:
    version = str(p.version)
    record = _record(home)
    if record.get(version) == p.manifest.sha256 and home.has_folder(version):
        return ServingExport(p.manifest.handle, p.name, p.version, "unchanged")
    staging = f".{version}.{uuid.uuid4().hex[:8]}.tmp"
    # Private while it is filled: nobody else can put a link inside it meanwhile.
    into = home.make_folder(staging, 0o700)
    try:
        with into:
            _extract(store, p.manifest, into.path_inside(), caps)
            os.chmod(into.fd, 0o755)
        home.swap_in(staging, version)
    except ArchiveRejected as exc:
        return ServingExport(p.manifest.handle, p.name, p.version, "refused", str(exc))
    finally:
        home.remove(staging)
    record[version] = p.manifest.sha256
    _write_record(home, record)
    return ServingExport(p.manifest.handle, p.name, p.version, "written")


def _prune(home: HeldFolder, name: str, keep: int) -> list[ServingExport]:
    """The oldest versions beyond `keep`: renamed out of TF Serving's sight, then removed."""
    record = _record(home)
    versions = sorted((int(v) for v in record if v.isdigit()), reverse=True)
    removed = []
    for version in versions[keep:]:
        if home.has_folder(str(version)):
            aside = f".{version}.{uuid.uuid4().hex[:8]}.old"
            home.rename(str(version), aside)
            home.remove(aside)
        record.pop(str(version), None)
        removed.append(ServingExport("", name, version, "removed"))
    if removed:
        _write_record(home, record)
    return removed


def _platform(manifest: ModelManifest) -> str | None:
    """TF Serving's model_platform for the model's format; None: it cannot serve it."""
    model_format = manifest.model_format
    return model_format.serving_platform if model_format else None


def _unservable(manifest: ModelManifest) -> str | None:
    """Why TF Serving cannot serve the model's format, or None if it can."""
    if _platform(manifest) is not None:
        return None
    name = manifest.model_format.name if manifest.model_format else "this format's"
    return f"TF Serving does not serve {name} models"


def render_config(root: HeldFolder, base: Path, platforms: dict[str, str]) -> str:
    """models.config for the models of this export (`platforms`: each one's name and its
    format's model_platform), each version it keeps; `base` is the export root as TF
    Serving reaches it."""
    lines = ["model_config_list {"]
    for name, platform in sorted(platforms.items()):
        with root.folder(name) as home:
            versions = sorted(int(v) for v in _record(home) if v.isdigit() and home.has_folder(v))
        if not versions:
            continue
        lines += [
            "  config {",
            f"    name: {json.dumps(name)}",
            f"    base_path: {json.dumps(str(base / name))}",
            f"    model_platform: {json.dumps(platform)}",
            "    model_version_policy {",
            "      specific {",
            *[f"        versions: {v}" for v in versions],
            "      }",
            "    }",
            "  }",
        ]
    return "\n".join([*lines, "}"]) + "\n"


def _refuse_links(root: HeldFolder, names: set[str]) -> None:
    """Before anything is written: no link where this export reads or writes (see
    HeldFolder). Each step checks again, by descriptor, for one planted meanwhile."""
    root.has_file(CONFIG)
    for name in sorted(names):
        if root.has_folder(name):
            with root.folder(name) as home:
                home.refuse_links()


def export_serving(
    store: BlobStore,
    out: Path,
    placements: list[Placement],
    caps: ArchiveLimits,
    keep: int,
    refuse: Callable[[ModelManifest], str | None] = lambda _: None,
) -> list[ServingExport]:
    """Raises NotFollowed, naming it, for a link under `out` (the model folder, a version,
    the record, models.config): such a link made the export prune and write wherever it
    pointed. `out` itself may be a link."""
    with HeldFolder.open_root(out) as root:
        return _export(store, root, out.resolve(), placements, caps, keep, refuse)


def _export(
    store: BlobStore,
    root: HeldFolder,
    base: Path,
    placements: list[Placement],
    caps: ArchiveLimits,
    keep: int,
    refuse: Callable[[ModelManifest], str | None],
) -> list[ServingExport]:
    names = {p.name for p in placements}
    _refuse_links(root, names)
    done = []
    for placement in placements:
        why = refuse(placement.manifest) or _unservable(placement.manifest)
        if why is not None:
            m = placement.manifest
            done.append(ServingExport(m.handle, placement.name, placement.version, "refused", why))
            continue
        with root.folder(placement.name, create=True) as home:
            # versions an earlier run exchanged out, once readers are done
            home.drop_old_copies(OLD_COPIES_KEPT)
            done.append(_place(store, home, placement, caps))
    for name in sorted(names):
        if root.has_folder(name):
            with root.folder(name) as home:
                done += _prune(home, name, keep)
    # Exactly what this run exported: a model refused now (or left out) is dropped from
    # what TF Serving loads, its folders left for the operator.
    served = {e.name for e in done if e.status in ("written", "unchanged")}
    platforms = {
        p.name: platform
        for p in placements
        if p.name in served and (platform := _platform(p.manifest)) is not None
    }
    config = render_config(root, base, platforms)
    if root.read_text(CONFIG) != config:
        root.write_text(CONFIG, config)
    return done
