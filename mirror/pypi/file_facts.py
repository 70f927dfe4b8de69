"""What an index says about a file besides its bytes, settled before a manifest commits.
upload-time (PEP 700) and yanked (PEP 592) are upstream's word, read from its PEP 691
page; requires-python and the METADATA blob (PEP 658) come from the verified wheel.
Facts already known for a sha256 are kept, so a no-op sync opens no wheel; a page
upstream cannot give keeps the last facts it gave."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mirror.core.errors import BlobNotFound, StoreError
from mirror.core.licenses import License
from mirror.core.redact import bounded, shown
from mirror.core.runs import Failure
from mirror.core.storage import BlobStore, open_seekable
from mirror.core.timestamps import rfc3339_utc
from mirror.core.upstream import ProjectPages
from mirror.pypi.core_metadata import MAX_METADATA, extract
from mirror.pypi.errors import MetadataError, WheelRefused
from mirror.pypi.package_licenses import license_of
from mirror.pypi.resolve import Wheel
from mirror.pypi.wheel_contents import check_wheel

log = logging.getLogger("tfmirror.pypi")
PAGE_WORKERS = 32  # as many as ProjectPages keeps connections open


def read_digests(pages: ProjectPages, projects: Iterable[str]) -> dict[str, str | None]:
    """Each page's digest, PAGE_WORKERS pages at a time (one after another, TFX's 264
    took 3.7 s): each read, or found unchanged by its ETag."""
    names = sorted(set(projects))
    with ThreadPoolExecutor(PAGE_WORKERS, thread_name_prefix="pages") as pool:
        return dict(zip(names, pool.map(pages.digest, names), strict=True))


def read_pages(pages: ProjectPages, projects: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Upstream's entry for each file of these projects, by filename. A page upstream
    said is unchanged since the last sync is not read: its facts are the manifests'."""
    wanted = sorted(p for p in set(projects) if not pages.unchanged(p))
    with ThreadPoolExecutor(PAGE_WORKERS, thread_name_prefix="pages") as pool:
        docs = list(pool.map(pages.get, wanted))
    entries: dict[str, dict[str, Any]] = {}
    for doc in docs:
        for entry in (doc or {}).get("files", []):
            if isinstance(entry.get("filename"), str):
                entries[entry["filename"]] = entry
    return entries


def _upload_time(value: object, filename: str) -> str | None:
    """Upstream's upload-time in PEP 700's form (mirror.core.timestamps); one that is no
    time is no word: the file is listed without it, and the log says so."""
    moment = rfc3339_utc(value)
    if moment is None and value is not None:
        log.warning(
            "%s: upstream's upload-time %s is not a time; not passed on",
            filename,
            shown(repr(value), 60),
        )
    return moment


def _yanked(value: object) -> bool | str:
    if isinstance(value, str):
        return bounded(value, 500)  # a yank reason rides on every index page
    return value is True


def _declared_metadata(entry: Mapping[str, Any]) -> str | None:
    # PEP 714 renamed dist-info-metadata to core-metadata; indexes send either.
    for key in ("core-metadata", "dist-info-metadata"):
        value = entry.get(key)
        if isinstance(value, dict) and isinstance(value.get("sha256"), str):
            return str(value["sha256"])
    return None


def settle(
    store: BlobStore,
    wheel: Wheel,
    entry: Mapping[str, Any] | None,
    known: Wheel | None,
) -> Wheel:
    """The wheel with every fact an installer reads; raises MetadataError, StoreError or
    WheelRefused."""
    if entry is not None and (entry.get("hashes") or {}).get("sha256") != wheel.sha256:
        entry = None  # upstream now lists other bytes under this name: not this file's facts
    # The resolver's lock gives it in PEP 700's form already; a manifest of the release
    # before may hold one in another.
    upload_time = wheel.upload_time or (rfc3339_utc(known.upload_time) if known else None)
    yanked = known.yanked if known else False
    if entry is not None:
        upload_time = _upload_time(entry.get("upload-time"), wheel.filename) or upload_time
        yanked = _yanked(entry.get("yanked"))
    facts: dict[str, Any] = {"upload_time": upload_time, "yanked": yanked}
    if not wheel.is_wheel:
        return dataclasses.replace(wheel, **facts)  # an sdist kept beside its built wheel
    if known and known.metadata_sha256 and store.has_blob(known.metadata_sha256):
        facts |= {
            "metadata_sha256": known.metadata_sha256,
            "requires_python": known.requires_python,
            "license": known.license or recorded_license(store, known.metadata_sha256),
        }
    else:
        # A new file: read as an installer reads its zip before any index offers it.
        with open_seekable(store, wheel.sha256) as blob:
            check_wheel(blob, wheel.filename, contents=False)
        declared = _declared_metadata(entry) if entry is not None else None
        metadata = extract(store, wheel, declared)
        facts |= {
            "metadata_sha256": metadata.sha256,
            "requires_python": metadata.requires_python,
            "license": metadata.license,
        }
    return dataclasses.replace(wheel, **facts)


def recorded_license(store: BlobStore, metadata_sha256: str) -> License:
    """A file a manifest of the release before licences lists: its licence read from the
    METADATA blob the mirror already holds (no wheel opened, nothing fetched)."""
    try:
        with store.open_blob(metadata_sha256) as f:
            return license_of(f.read(MAX_METADATA + 1))
    except BlobNotFound:
        return License.unknown("its METADATA blob is missing")


def _sdists_licensed(settled: dict[str, Wheel]) -> None:
    """An sdist kept beside the wheel built from it has that wheel's licence: the built
    wheel's METADATA is what the build made of the sdist's."""
    built = {w.built_from.sdist_sha256: w for w in settled.values() if w.built_from is not None}
    for sha, sdist in list(settled.items()):
        wheel = built.get(sha)
        if not sdist.is_wheel and sdist.license is None and wheel is not None:
            settled[sha] = dataclasses.replace(sdist, license=wheel.license)


def settle_all(
    store: BlobStore,
    wheels: Iterable[Wheel],
    entries: Mapping[str, Mapping[str, Any]],
    known: Mapping[str, Wheel],
    workers: int = 2,
) -> tuple[dict[str, Wheel], list[Failure]]:
    """Each wheel (by sha256) settled; a wheel whose METADATA cannot be served fails."""
    settled: dict[str, Wheel] = {}
    failures: list[Failure] = []

    def one(wheel: Wheel) -> tuple[Wheel, Wheel | Failure]:
        try:
            return wheel, settle(store, wheel, entries.get(wheel.filename), known.get(wheel.sha256))
        except (MetadataError, StoreError, WheelRefused) as exc:
            return wheel, Failure(wheel.filename, wheel.url, str(exc))

    unique = {w.sha256: w for w in wheels}
    with ThreadPoolExecutor(workers, thread_name_prefix="metadata") as pool:
        for wheel, outcome in pool.map(one, unique.values()):
            if isinstance(outcome, Failure):
                failures.append(outcome)
            else:
                settled[wheel.sha256] = outcome
    _sdists_licensed(settled)
    return settled, failures
