"""The PyPI sync: resolve -> download+verify -> store -> commit manifests -> devpi.

A target's manifest is committed only when every wheel of its closure is verified and
stored: a target with a failed file keeps serving its previous closure. devpi is brought
in line after the commit, from the store, so it can always be rebuilt from the store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from mirror.core.config import Config, PypiConfig, Target
from mirror.core.errors import ServiceError
from mirror.core.hosts import HostPolicy
from mirror.core.runs import Failure, RunRecord, utcnow
from mirror.core.storage import BlobStore, StoreError
from mirror.core.upstream import DownloadError, Fetched, FetchPolicy, ProjectPages, fetch_verified
from mirror.pypi.file_facts import read_pages, settle_all
from mirror.pypi.lag import record_lag
from mirror.pypi.manifest import Manifest, load_all, load_manifest, save_manifest
from mirror.pypi.resolve import ResolveError, Wheel, resolve_target
from mirror.pypi.speculate import HeadStart


class Published(Protocol):
    count: int  # files the index was shown to hold, newly
    failures: list[Failure]
    offered_after: float  # seconds into publishing when the index offered every file


def _as_set(wheels: list[Wheel]) -> set[str]:
    return {json.dumps(w.as_json(), sort_keys=True) for w in wheels}


def fetch_policy(pypi: PypiConfig) -> FetchPolicy:
    """How wheels are fetched: sizes come from the index; a redirect may reach an internal
    host only if it is the configured upstream's or listed in [pypi] allow_hosts."""
    return FetchPolicy(
        timeout=pypi.timeout,
        retries=pypi.retries,
        deadline=pypi.deadline,
        hosts=HostPolicy.trusting([pypi.upstream, *pypi.allow_hosts], "[pypi] allow_hosts"),
    )


class PackageIndex(Protocol):
    """Where the fleet installs from (devpi, on the devpi side): set up while the sync
    resolves and downloads, then made to offer exactly the committed manifests' files."""

    @property
    def where(self) -> str: ...

    def prepare(self) -> None: ...

    def publish(self, files: Mapping[str, Wheel], changed: bool) -> Published: ...


@dataclass
class SyncReport:
    new: int = 0
    skipped: int = 0
    bytes: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    committed: list[str] = field(default_factory=list)
    devpi_warmed: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        return (
            f"pypi sync: {self.new} new, {self.skipped} skipped, {len(self.failures)} failed, "
            f"{self.bytes / 1e6:.1f} MB, {self.seconds:.1f} s"
        )


class Progress:
    """Receives progress events; the CLI draws a bar, tests and the scheduler ignore them."""

    def start(self, files: int, total_bytes: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class _Plan:
    wheels: dict[str, list[Wheel]]  # per target id
    targets: dict[str, Target]
    to_fetch: dict[str, Wheel]  # by sha256
    # What the committed manifests held when the sync began, by sha256: read once, for
    # skipping known files and for the facts already settled for them.
    known: dict[str, Wheel] = field(default_factory=dict)


class PypiSync:
    def __init__(
        self,
        config: Config,
        store: BlobStore,
        index: PackageIndex | None,
        progress: Progress | None = None,
        resolver: Callable[[tuple[str, ...], Target, str], list[Wheel]] = resolve_target,
    ) -> None:
        self.config = config
        self.store = store
        self.index = index
        self.progress = progress or Progress()
        self.resolver = resolver
        self.policy = fetch_policy(config.pypi)

    def run(self, trigger: str = "manual") -> SyncReport:
        record = RunRecord.begin("pypi", trigger)
        report = SyncReport()
        began = time.monotonic()
        pypi = self.config.pypi
        with ThreadPoolExecutor(2, thread_name_prefix="side") as side:
            # devpi's user and index are set up while the closure resolves and downloads
            # (on a fresh devpi that is 0.3 s of password hashing).
            devpi_ready = None
            if self.index is not None:
                devpi_ready = side.submit(self.index.prepare)
            pages = ProjectPages(pypi.upstream, pypi.timeout)
            head_start = HeadStart(self.store, pypi.requirements, pypi.targets, pages, self.policy)
            plan = _Plan({}, {}, {})
            try:
                self._resolve(plan, report, head_start)
                # Upstream's word on each file (upload time, yanked) comes while it downloads.
                projects = {w.project for ws in plan.wheels.values() for w in ws}
                entries = side.submit(read_pages, pages, projects)
                self._download(plan, report, head_start)
            finally:
                head_start.close(wanted={w.sha256 for ws in plan.wheels.values() for w in ws})
            self._settle(plan, report, entries.result())
            self._commit(plan, report)
            # Upstream's newest versions, for the status page; off the critical path.
            lag = side.submit(record_lag, self.store, pages, pypi.requirements)
            if devpi_ready is not None:
                self._push_devpi(report, began, devpi_ready)
            try:
                lag.result()
            except StoreError as exc:
                report.failures.append(Failure("lag", pypi.upstream, str(exc)))
        report.seconds = time.monotonic() - began
        record.finish(
            self.store,
            ok=report.ok,
            counts={"new": report.new, "skipped": report.skipped, "failed": len(report.failures)},
            bytes_moved=report.bytes,
            errors=[f.as_json() for f in report.failures],
            extra={"timings": report.timings, "committed": report.committed},
        )
        return report

    # -- 1. resolve ------------------------------------------------------------------
    def _resolve(self, plan: _Plan, report: SyncReport, head_start: HeadStart) -> None:
        t0 = time.monotonic()
        pypi = self.config.pypi
        committed = [w for m in load_all(self.store) for w in m.files]
        plan.known = {w.sha256: w for w in committed}
        have = {(w.filename, w.sha256) for w in committed}
        for target in pypi.targets:
            try:
                wheels = self.resolver(pypi.requirements, target, pypi.upstream)
            except ResolveError as exc:
                report.failures.append(Failure(target.id, "", str(exc)))
                continue
            plan.wheels[target.id] = wheels
            plan.targets[target.id] = target
            for wheel in wheels:
                if wheel.sha256 in plan.to_fetch:
                    continue
                if head_start.fetch_for(wheel.sha256) is not None:
                    plan.to_fetch[wheel.sha256] = wheel  # new, and already on its way
                elif (wheel.filename, wheel.sha256) in have or self.store.touch_blob(wheel.sha256):
                    # A blob no manifest lists is re-stamped before it is reused: gc
                    # spares blobs younger than its grace period until this commits.
                    report.skipped += 1
                else:
                    plan.to_fetch[wheel.sha256] = wheel
        report.timings["resolve"] = time.monotonic() - t0

    # -- 2. download and verify --------------------------------------------------------
    def _download(self, plan: _Plan, report: SyncReport, head_start: HeadStart) -> None:
        t0 = time.monotonic()
        wheels = list(plan.to_fetch.values())
        self.progress.start(len(wheels), sum(w.size or 0 for w in wheels))
        # Largest first: the TensorFlow wheel sets the critical path.
        wheels.sort(key=lambda w: -(w.size or 0))
        workers = min(self.config.pypi.workers, max(1, len(wheels)))
        with ThreadPoolExecutor(workers, thread_name_prefix="fetch") as pool:

            def fetch(wheel: Wheel) -> Future[Fetched]:
                return pool.submit(
                    fetch_verified,
                    self.store,
                    wheel.url,
                    wheel.sha256,
                    wheel.size,
                    self.policy,
                    self.progress.advance,
                )

            pending: dict[Future[Fetched], tuple[Wheel, bool]] = {}
            for wheel in wheels:
                guessed = head_start.fetch_for(wheel.sha256)
                pending[guessed or fetch(wheel)] = (wheel, guessed is not None)
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    wheel, was_guess = pending.pop(future)
                    try:
                        fetched = future.result()
                    except (DownloadError, StoreError) as exc:
                        if was_guess:  # fetched again the usual way, which reports
                            pending[fetch(wheel)] = (wheel, False)
                            continue
                        report.failures.append(Failure(wheel.filename, wheel.url, str(exc)))
                    else:
                        report.bytes += fetched.size
                        report.new += 1
                        if was_guess:
                            self.progress.advance(fetched.size)
                    self.progress.file_done()
        self.progress.close()
        report.timings["download_verify_store"] = time.monotonic() - t0

    # -- 3. what the index says besides the bytes ------------------------------------
    def _settle(
        self, plan: _Plan, report: SyncReport, entries: Mapping[str, Mapping[str, Any]]
    ) -> None:
        t0 = time.monotonic()
        failed = {f.name for f in report.failures}
        wanted = [w for ws in plan.wheels.values() for w in ws if w.filename not in failed]
        settled, failures = settle_all(self.store, wanted, entries, plan.known)
        report.failures.extend(failures)
        for target_id, wheels in plan.wheels.items():
            plan.wheels[target_id] = [settled.get(w.sha256, w) for w in wheels]
        report.timings["settle"] = time.monotonic() - t0

    # -- 4. commit -------------------------------------------------------------------
    def _commit(self, plan: _Plan, report: SyncReport) -> None:
        failed = {f.name for f in report.failures}
        for target_id, wheels in plan.wheels.items():
            if any(w.filename in failed for w in wheels):
                report.failures.append(
                    Failure(
                        target_id,
                        "",
                        "not committed: its closure has failed files; "
                        "the previous closure stays published",
                    )
                )
                continue
            old = load_manifest(self.store, target_id)
            same = (
                old is not None
                and old.requirements == self.config.pypi.requirements
                # A fact that changed upstream (a yank) is a change: the pages show it.
                and _as_set(old.files) == _as_set(wheels)
            )
            if same:
                continue
            manifest = Manifest(
                plan.targets[target_id], self.config.pypi.requirements, wheels, utcnow()
            )
            save_manifest(self.store, manifest)
            report.committed.append(target_id)

    # -- 5. devpi --------------------------------------------------------------------
    def _push_devpi(self, report: SyncReport, run_began: float, ready: Future[None]) -> None:
        assert self.index is not None
        t0 = time.monotonic()
        try:
            ready.result()
            files = {w.sha256: w for m in load_all(self.store) for w in m.files}
            warmed = self.index.publish(files, changed=bool(report.committed))
            report.devpi_warmed = warmed.count
            report.failures.extend(warmed.failures)
            report.timings["devpi_offers_at"] = t0 - run_began + warmed.offered_after
        except (ServiceError, StoreError) as exc:
            report.failures.append(Failure("devpi", self.index.where, str(exc)))
        report.timings["devpi"] = time.monotonic() - t0
