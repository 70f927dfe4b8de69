"""`tfmirror hub prefetch`: fill a TFHUB_CACHE_DIR from the mirror, so that the unchanged
handles (https://tfhub.dev/...) load with no network at all. tensorflow_hub caches a
compressed model in `<cache>/<sha1(handle as typed)>/` and treats a non-empty folder
there as downloaded. We download from the mirror, check the sha256 against the mirror's
manifest, validate and extract into a temporary folder (the model folder as archived,
for a format whose `caches` name that cache: hub_cache.formats), and rename it into
place, so tensorflow_hub never sees half a model."""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import socket
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from hub_cache.archive import inspect_archive
from hub_cache.errors import ArchiveRejected, PrefetchError
from hub_cache.formats import format_of
from hub_cache.formats.base import KAGGLEHUB_CACHE, TFHUB_CACHE, ModelFormat
from hub_cache.formats.saved_model import SAVED_MODEL
from hub_cache.held_folder import HeldFolder
from hub_cache.limits import ArchiveLimits
from mirror.core.handles import handle_path
from mirror.core.kaggle import parse_kaggle, parse_kagglehub
from mirror.core.redact import bounded

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Prefetched:
    handle: str
    folder: Path
    status: str  # fetched | unchanged


def cache_folder(cache_dir: Path, handle: str) -> Path:
    return cache_dir / hashlib.sha1(handle.encode("utf8")).hexdigest()


def mirror_path(handle: str, mirror: str) -> str:
    """The model's path on the mirror, for an original handle or a mirror handle."""
    own = mirror.rstrip("/") + "/hub/"
    if handle.startswith(own):
        return handle_path("https://x/" + handle[len(own) :])
    return handle_path(handle)


def _descriptor(folder: Path) -> Path:
    return Path(f"{folder}.descriptor.txt")


def _recorded_sha(record: Path) -> str:
    try:
        text = record.read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith("Sha256: "):
            return line.split(": ", 1)[1].strip()
    return ""


@dataclass(frozen=True)
class Place:
    """Where one prefetched model goes: its folder, and the file beside it that says it
    is complete and which archive it is (tensorflow_hub's descriptor, kagglehub's
    `<version>.complete` marker, which kagglehub only checks exists)."""

    folder: Path
    record: Path
    cache: str  # whose cache it is (hub_cache.formats.base): a format says which it fits


def tfhub_place(cache_dir: Path, handle: str) -> Place:
    folder = cache_folder(cache_dir, handle)
    return Place(folder, _descriptor(folder), TFHUB_CACHE)


def kagglehub_place(cache_dir: Path, handle: str) -> tuple[Place, str]:
    """kagglehub's layout for the handle as written (its framework spelling included):
    models/<owner>/<model>/<framework>/<variation>/<version>/ and <version>.complete."""
    kaggle = parse_kagglehub(handle) or parse_kaggle(handle)
    if kaggle is None:
        raise PrefetchError(
            f"{handle}: not a versioned Kaggle model handle; give "
            "owner/model/framework/variation/version or a kaggle.com/models/... URL"
        )
    parent = cache_dir / "models" / kaggle.owner / kaggle.model / kaggle.framework
    folder = parent / kaggle.variation / kaggle.version
    record = folder.with_name(f"{kaggle.version}.complete")
    return Place(folder, record, KAGGLEHUB_CACHE), kaggle.path


def prefetch(
    handle: str,
    cache_dir: Path,
    mirror: str,
    caps: ArchiveLimits,
    timeout: float = 60,
    kagglehub: bool = False,
    snapshot: str | None = None,
    environment: str | None = None,
) -> Prefetched:
    """Fill tensorflow_hub's cache (or, with `kagglehub`, kagglehub's) for `handle`:
    the model the mirror serves now, or as `snapshot` holds it."""
    mirror = mirror.rstrip("/")
    if kagglehub:
        place, path = kagglehub_place(cache_dir, handle)
    else:
        place, path = tfhub_place(cache_dir, handle), mirror_path(handle, mirror)
    info_url, doc, sha256, size = _model_doc(handle, path, mirror, caps, timeout, snapshot)
    if environment is not None:
        _loads_in(handle, doc, environment)
    model_format = _format_in(doc)
    if model_format is not None and place.cache not in model_format.caches:
        raise PrefetchError(
            f"{handle}: a {model_format.name} model does not go in a {place.cache} cache; "
            "`--to DIR` writes its files"
        )
    try:
        # The query its format is served at (a manifest from before formats were named
        # is a SavedModel's archive).
        name, value = (model_format or SAVED_MODEL).served_query
        archive_url = f"{info_url}?{name}={value}"
        return _fetch_into(handle, place, mirror, archive_url, sha256, size, caps, timeout)
    except OSError as exc:
        raise PrefetchError(f"{handle}: cache {cache_dir}: {exc.strerror or exc}") from None


def _model_doc(
    handle: str, path: str, mirror: str, caps: ArchiveLimits, timeout: float, snapshot: str | None
) -> tuple[str, dict[str, Any], str, int]:
    """The mirror's page of the model (its URL and JSON), and its blob's sha256 and size."""
    info_url = f"{mirror}/hub/{'@' + snapshot + '/' if snapshot else ''}{path}"
    try:
        info = requests.get(info_url, headers={"Accept": "application/json"}, timeout=timeout)
    except requests.RequestException as exc:
        raise PrefetchError(f"{handle}: mirror {mirror} unreachable: {exc}") from None
    if info.status_code == 404:
        raise PrefetchError(f"{handle}: {_said(info) or f'the mirror has no model at /hub/{path}'}")
    if info.status_code == 410:  # quarantined: the mirror says why
        raise PrefetchError(f"{handle}: {_said(info) or 'the mirror no longer offers it'}")
    if info.status_code != 200:
        raise PrefetchError(f"{handle}: mirror answered HTTP {info.status_code} for {info_url}")
    try:
        doc = info.json()
        sha256, size = str(doc["sha256"]), int(doc["size"])
    except (ValueError, KeyError, TypeError):
        raise PrefetchError(
            f"{handle}: {info_url} is not a tfmirror model page (no sha256 and "
            "size in its JSON): is --mirror a tfmirror web front?"
        ) from None
    if size > caps.max_uncompressed:
        raise PrefetchError(
            f"{handle}: the mirror lists {size} bytes, over the "
            f"{caps.max_uncompressed // 2**20} MiB cap ([hub] max_uncompressed_mb)"
        )
    return info_url, doc, sha256, size


def _format_in(doc: dict[str, Any]) -> ModelFormat | None:
    archive = doc.get("archive")
    return format_of(archive) if isinstance(archive, dict) else None


def prefetch_to(
    handle: str,
    to: Path,
    mirror: str,
    caps: ArchiveLimits,
    timeout: float = 60,
    snapshot: str | None = None,
    environment: str | None = None,
) -> Prefetched:
    """Write the model plainly into `to`, for devices and web servers: a single-file
    model (a .tflite) as `<path with _>.tflite`, checked as its client reads it; an
    archived one extracted into a folder of that name. With `environment`, refused if
    the mirror found that environment's runtime cannot load it."""
    mirror = mirror.rstrip("/")
    path = mirror_path(handle, mirror)
    info_url, doc, sha256, size = _model_doc(handle, path, mirror, caps, timeout, snapshot)
    if environment is not None:
        _loads_in(handle, doc, environment)
    model_format = _format_in(doc)
    if model_format is None:
        raise PrefetchError(
            f"{handle}: the mirror serves it in a format this tfmirror does not know"
        )
    name, value = model_format.served_query
    target = to / (
        path.replace("/", "_") + ("" if not model_format.single_file else model_format.suffix)
    )
    to.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=to, prefix=".tfmirror-", delete=False) as spool:
        spooled = Path(spool.name)
    try:
        with spooled.open("w+b") as spool:
            _download(f"{info_url}?{name}={value}", spool, sha256, size, timeout)
            spool.seek(0)
            try:
                if model_format.single_file:
                    model_format.inspect_file(spool, size, target.name, caps)
                else:
                    staging = to / f".{target.name}.{uuid.uuid4().hex}.tmp"
                    staging.mkdir()
                    try:
                        inspect_archive(spool, size, caps, extract_to=staging)
                        if target.exists():
                            swap_in(staging, target)
                        else:
                            os.replace(staging, target)
                    finally:
                        shutil.rmtree(staging, ignore_errors=True)
            except ArchiveRejected as exc:
                raise PrefetchError(f"{handle}: rejected: {exc}") from None
        if model_format.single_file:
            os.replace(spooled, target)
    finally:
        spooled.unlink(missing_ok=True)
    return Prefetched(handle, target, "fetched")


def _loads_in(handle: str, doc: dict[str, object], environment: str) -> None:
    """Refuse a model the mirror found the environment's runtime (TensorFlow, LiteRT,
    Keras: its format's) cannot load."""
    checked = doc.get("environments")
    pair = checked.get(environment) if isinstance(checked, dict) else None
    if isinstance(pair, dict) and pair.get("status") == "incompatible":
        reason = bounded(str(pair.get("reason", "")), 300)
        raise PrefetchError(f"{handle}: environment {environment} cannot load it: {reason}")


def _fetch_into(
    handle: str,
    place: Place,
    mirror: str,
    archive_url: str,
    sha256: str,
    size: int,
    caps: ArchiveLimits,
    timeout: float,
) -> Prefetched:
    folder, home = place.folder, place.folder.parent
    home.mkdir(parents=True, exist_ok=True)
    drop_old_copies(home)
    if folder.is_dir() and any(folder.iterdir()) and _recorded_sha(place.record) == sha256:
        return Prefetched(handle, folder, "unchanged")

    with tempfile.TemporaryFile(dir=home, prefix=".tfmirror-") as spool:
        _download(archive_url, spool, sha256, size, timeout)
        staging = home / f"{folder.name}.{uuid.uuid4().hex}.tmp"
        staging.mkdir()
        try:
            spool.seek(0)
            facts = inspect_archive(spool, size, caps, extract_to=staging)
            if place.cache not in facts.model_format.caches:
                raise PrefetchError(
                    f"{handle}: a {facts.model_format.name} model does not go in "
                    f"a {place.cache} cache"
                )
            swap_in(staging, folder)
        except ArchiveRejected as exc:
            raise PrefetchError(f"{handle}: archive rejected: {exc}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    _write_record(place.record, handle, mirror, sha256)
    return Prefetched(handle, folder, "fetched")


def _download(url: str, spool: object, sha256: str, size: int, timeout: float) -> None:
    digest = hashlib.sha256()
    count = 0
    try:
        with requests.get(url, stream=True, timeout=timeout) as answer:
            if answer.status_code != 200:
                raise PrefetchError(f"{url}: HTTP {answer.status_code}")
            for chunk in answer.iter_content(CHUNK):
                digest.update(chunk)
                spool.write(chunk)  # type: ignore[attr-defined]
                count += len(chunk)
    except requests.RequestException as exc:
        raise PrefetchError(f"{url}: {exc}") from None
    if count != size or digest.hexdigest() != sha256:
        raise PrefetchError(
            f"{url}: got {count} bytes with sha256 {digest.hexdigest()}, "
            f"the mirror's manifest says {size} bytes with sha256 {sha256}"
        )


def swap_in(staging: Path, folder: Path) -> None:
    """Put the extracted model in place (HeldFolder.swap_in: one exchange, so a
    tensorflow_hub reading the cache meanwhile never finds an empty place, which it
    would download into). `staging` is a sibling of `folder`."""
    with HeldFolder.open_root(folder.parent) as home:
        home.swap_in(staging.name, folder.name)


OLD_COPIES_KEPT = 600  # seconds an exchanged-out model stays for readers still in it


def drop_old_copies(cache_dir: Path) -> None:
    with HeldFolder.open_root(cache_dir) as home:
        home.drop_old_copies(OLD_COPIES_KEPT)


def _write_record(record: Path, handle: str, mirror: str, sha256: str) -> None:
    # The same first lines tensorflow_hub writes (it never reads them back), plus ours.
    text = (
        f"Module: {handle}\nDownload Time: {datetime.datetime.today()}\n"
        f"Downloader Hostname: {socket.gethostname()} (PID:{os.getpid()})\n"
        f"Mirror: {mirror}\nSha256: {sha256}\n"
    )
    tmp = record.with_name(f".{record.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, record)


def _said(answer: requests.Response) -> str:
    """The message of the mirror's JSON error, bounded."""
    try:
        message = answer.json().get("message", "")
    except ValueError:
        return ""
    return bounded(str(message), 300) if isinstance(message, str) else ""
