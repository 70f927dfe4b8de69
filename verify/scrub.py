"""Scrub: re-hash every referenced blob against its key; repair what can be repaired.

Hashing streams each blob and runs in parallel (hashlib drops the GIL on large updates,
so two cores hash two blobs at once). Repair re-fetches from upstream, verified against
the same sha256 (a model file kept on its own is made again from its archive), and never
deletes evidence: a corrupt blob is moved to quarantine/.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mirror.core.config import Config
from mirror.core.credentials import Credentials
from mirror.core.errors import BlobNotFound, DownloadError, StoreError, TfmirrorError
from mirror.core.hosts import HostPolicy
from mirror.core.storage import BlobStore
from mirror.core.upstream import FetchPolicy, fetch_verified
from verify.references import MadeFrom, Reference

CHUNK = 4 * 1024 * 1024
QUARANTINE = "quarantine/sha256"


@dataclass
class BlobProblem:
    sha256: str
    kind: str  # missing | corrupt
    detail: str
    names: list[str]
    repaired: bool = False
    repair_error: str = ""

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class ScrubReport:
    checked: int = 0
    bytes: int = 0
    seconds: float = 0.0
    problems: list[BlobProblem] = field(default_factory=list)


def hash_blob(store: BlobStore, sha256: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with store.open_blob(sha256) as reader:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _check(store: BlobStore, ref: Reference) -> tuple[int, BlobProblem | None]:
    try:
        got, size = hash_blob(store, ref.sha256)
    except BlobNotFound:
        return 0, BlobProblem(ref.sha256, "missing", "not in the store", ref.names)
    if got != ref.sha256:
        return size, BlobProblem(ref.sha256, "corrupt", f"its bytes hash to {got}", ref.names)
    if ref.size is not None and size != ref.size:
        detail = f"{size} bytes, the manifest says {ref.size}"
        return size, BlobProblem(ref.sha256, "corrupt", detail, ref.names)
    return size, None


def scrub(store: BlobStore, refs: dict[str, Reference], workers: int = 2) -> ScrubReport:
    report = ScrubReport()
    began = time.monotonic()
    # Largest first, so the longest hash starts at once and the rest fill the other core.
    ordered = sorted(refs.values(), key=lambda r: -(r.size or 0))
    with ThreadPoolExecutor(workers, thread_name_prefix="scrub") as pool:
        for size, problem in pool.map(lambda r: _check(store, r), ordered):
            report.checked += 1
            report.bytes += size
            if problem:
                report.problems.append(problem)
    report.seconds = time.monotonic() - began
    return report


def repair_policy(config: Config) -> FetchPolicy:
    """Repairs fetch from where the PyPI sync or the hub sync fetched: every host either
    trusts may be reached again (sizes and hashes are known, so no cap is needed)."""
    named = [config.pypi.upstream, *config.pypi.allow_hosts, *config.hub.allow_hosts]
    named += [url for m in config.hub.models for url in (m.handle, m.source) if "://" in url]
    return FetchPolicy(
        timeout=config.pypi.timeout,
        retries=config.pypi.retries,
        deadline=max(config.pypi.deadline, config.hub.deadline),
        hosts=HostPolicy.trusting(named, "[pypi] or [hub] allow_hosts"),
        # Stored URLs carry no login: the configured upstreams' go with them again.
        credentials=Credentials.of(named),
    )


# Extracts an archive blob again, keeping every file of it as a blob (hub_sync's).
Remake = Callable[[MadeFrom], None]


def repair_order(problems: list[BlobProblem], refs: dict[str, Reference]) -> list[BlobProblem]:
    """Archives before the files made from them: a shard is made again from its archive
    only once the archive itself is whole."""
    return sorted(problems, key=lambda p: bool(refs[p.sha256].made_from))


def repair(
    store: BlobStore,
    problem: BlobProblem,
    ref: Reference,
    policy: FetchPolicy,
    remake: Remake | None = None,
) -> None:
    if problem.kind == "corrupt":
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        try:
            store.move_blob(problem.sha256, f"{QUARANTINE}/{problem.sha256}-{stamp}")
        except StoreError as exc:
            problem.repair_error = f"cannot quarantine: {exc}"
            return
    errors = []
    for source in ref.sources:
        try:
            if source.startswith(("http://", "https://")):
                fetch_verified(store, source, ref.sha256, ref.size, policy)
            else:
                _copy_verified(store, Path(source), ref.sha256, ref.size)
            problem.repaired = True
            return
        except (DownloadError, StoreError, OSError) as exc:
            errors.append(f"{source}: {exc}")
    for archive in ref.made_from:
        if remake is None:
            break
        try:
            remake(archive)
        except (TfmirrorError, OSError) as exc:
            errors.append(f"from archive {archive.sha256[:12]}: {exc}")
            continue
        if _whole(store, ref):
            problem.repaired = True
            return
        errors.append(f"archive {archive.sha256[:12]} does not hold it")
    problem.repair_error = "; ".join(errors) or "no upstream to fetch it from again"


def _whole(store: BlobStore, ref: Reference) -> bool:
    try:
        return hash_blob(store, ref.sha256)[0] == ref.sha256
    except BlobNotFound:
        return False


def _copy_verified(store: BlobStore, path: Path, sha256: str, size: int | None) -> None:
    from mirror.core.upstream import copy_local

    fetched = copy_local(store, path, size or 0)
    if fetched.sha256 != sha256:  # the other blob is unreferenced: gc collects it
        raise DownloadError(f"{path} now hashes to {fetched.sha256}")
