"""Guess, while uv resolves, which wheel each top-level requirement will lock to, and fetch
it at once: for a cold sync the TensorFlow wheel (572 MB) is the critical path, and uv's
choice for a top-level requirement is almost always the newest release the specifier
allows that has a wheel for the target, which one PEP 691 page tells. A guess is
verified like any download and only ever becomes a blob: the resolver's answer decides
whether its bytes are used, nothing reaches a manifest unless resolved, and a wrong
guess is cancelled and remembered so that later syncs do not fetch it again. A published
guess is never deleted here, right or wrong: by the time the resolver answered, the blob
may be another replica's (one that took the lease over while this one was paused) or one
a snapshot holds, and whether a blob is still needed is gc's question alone (verify.gc)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from mirror.core.config import Target
from mirror.core.errors import DownloadError, LeaseLost
from mirror.core.lease import fence
from mirror.core.quarantine import filename_facts
from mirror.core.storage import BlobStore
from mirror.core.upstream import Fetched, FetchPolicy, ProjectPages, fetch_verified
from mirror.pypi.cooldown import Cooldown
from mirror.pypi.resolve import Wheel, tag_ranks

# sha256 of guesses the resolver did not confirm; the key keeps the name the prefetch had
# (head start) when stores of earlier releases were written, so they keep their misses.
MISSES = "state/head-start-misses.json"
JOB = "pypi"  # the lease a prefetch runs under: its sync's
KEEP_MISSES = 200
STOP_WAIT = 2.0
T = TypeVar("T")


@dataclass(frozen=True)
class Closure:
    """What one environment asks for on one target."""

    requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    target: Target
    cooldown: Cooldown | None = None  # a release it holds back is no guess
    # A release its advisory policy blocks is no guess either: (project, version) -> True.
    blocked: Callable[[str, str], bool] | None = None


class SpeculativePrefetch:
    """Fetches the guessed wheels from the moment a sync starts, on threads of its own.

    A guess never holds the sync up for long: once the resolver has answered no new
    guess starts, and one it did not confirm is stopped at its next chunk and waited
    for at most STOP_WAIT seconds.
    """

    def __init__(
        self,
        store: BlobStore,
        closures: Iterable[Closure],
        pages: ProjectPages,
        policy: FetchPolicy,
    ) -> None:
        self._store = store
        self._policy = policy
        self._lock = threading.Lock()  # guards the three below
        self._fetches: dict[str, Future[Fetched]] = {}
        self._resolved = False  # the resolver answered: too late for new guesses
        self._unwanted: set[str] = set()
        # Bytes each guess has moved, and who hears of its bytes from now on (the
        # sync's progress bar, once it starts): what came before it is not its to count.
        self._moved: dict[str, int] = {}
        self._hook: Callable[[int], None] | None = None
        self._ended: set[str] = set()  # stored or failed: no more bytes to come
        self._slots = threading.Semaphore(2)  # guesses fetched at once
        _on_daemon(self._start, tuple(closures), pages)

    def _start(self, closures: tuple[Closure, ...], pages: ProjectPages) -> None:
        try:
            misses = set(self._misses())
            guesses = [
                wheel
                for c in closures
                for wheel in guess_top_wheels(
                    c.requirements, (c.target,), pages, c.constraints, c.cooldown, c.blocked
                )
            ]
            for wheel in guesses:
                if wheel.sha256 in misses or self._store.has_blob(wheel.sha256):
                    continue
                with self._lock:
                    if self._resolved:
                        return
                    if wheel.sha256 not in self._fetches:
                        self._fetches[wheel.sha256] = _on_daemon(self._fetch, wheel)
        except Exception:  # a guess is only ever a prefetch: the sync goes on without
            return

    def _fetch(self, wheel: Wheel) -> Fetched:
        still_wanted = partial(self._still_wanted, wheel.sha256)
        with self._slots:
            self._still_wanted(wheel.sha256, 0)
            try:
                fetched = fetch_verified(
                    self._store, wheel.url, wheel.sha256, wheel.size, self._policy, still_wanted
                )
            finally:
                with self._lock:
                    self._ended.add(wheel.sha256)
        with self._lock:
            if wheel.sha256 in self._unwanted:
                # Published, so left to gc: see the module's docstring.
                raise DownloadError("not in the resolved closure")
        return fetched

    def _misses(self) -> list[str]:
        raw = self._store.get(MISSES)
        return list(json.loads(raw)) if raw else []

    def _still_wanted(self, sha256: str, nbytes: int) -> None:
        with self._lock:
            if sha256 in self._unwanted:
                raise DownloadError("not in the resolved closure")
            self._moved[sha256] = self._moved.get(sha256, 0) + nbytes
            hook = self._hook
        if hook is not None and nbytes:
            hook(nbytes)

    def follow(self, hook: Callable[[int], None]) -> dict[str, int]:
        """From now on each guess still under way passes the bytes it moves to `hook`;
        returns those guesses with the bytes each moved before (a guess missing from it
        has ended: its bytes all came before)."""
        with self._lock:
            self._hook = hook
            return {
                sha256: self._moved.get(sha256, 0)
                for sha256 in self._fetches
                if sha256 not in self._ended
            }

    def fetch_for(self, sha256: str) -> Future[Fetched] | None:
        """The download a guess already started for this wheel, if any. Asked once the
        resolver has answered; from then on no new guess starts."""
        with self._lock:
            self._resolved = True
            return self._fetches.get(sha256)

    def close(self, wanted: set[str]) -> None:
        """Let go of the guesses the resolver did not confirm; remember them as misses.
        What a let-go guess had published stays, for gc (see the module's docstring)."""
        with self._lock:
            self._resolved = True
            unwanted = set(self._fetches) - wanted
            self._unwanted |= unwanted
        # A guess stops at its next chunk and drops its unpublished bytes; one that
        # stalls is not waited for past this.
        wait([self._fetches[sha256] for sha256 in unwanted], timeout=STOP_WAIT)
        if not unwanted:
            return
        try:
            # Shared state: a sync whose lease went to another replica leaves it alone.
            fence(JOB)
        except LeaseLost:
            return
        misses = [*(m for m in self._misses() if m not in unwanted), *sorted(unwanted)]
        self._store.put(MISSES, json.dumps(misses[-KEEP_MISSES:]).encode())


def _on_daemon(fn: Callable[..., T], *args: object) -> Future[T]:
    """Run fn on a daemon thread: a let-go guess stalled in a read (up to the timeout,
    times the retries) must not keep the process alive after its sync has ended, which
    a ThreadPoolExecutor's threads do (they are joined at exit)."""
    future: Future[T] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name="speculative-prefetch", daemon=True).start()
    return future


def _bounds(constraints: tuple[str, ...]) -> dict[str, SpecifierSet]:
    out: dict[str, SpecifierSet] = {}
    for text in constraints:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if req.marker is None:
            name = canonicalize_name(req.name)
            out[name] = out.get(name, SpecifierSet()) & req.specifier
    return out


def guess_top_wheels(
    requirements: tuple[str, ...],
    targets: tuple[Target, ...],
    pages: ProjectPages,
    constraints: tuple[str, ...] = (),
    cooldown: Cooldown | None = None,
    blocked: Callable[[str, str], bool] | None = None,
) -> list[Wheel]:
    """For each target, the wheel each plain top-level requirement most likely locks to
    within the constraints (best effort: a requirement with a marker or an unreadable
    page gets no guess)."""
    guesses = []
    bounds = _bounds(constraints)
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if req.marker is not None or req.url:
            continue
        req.specifier &= bounds.get(canonicalize_name(req.name), SpecifierSet())
        project = canonicalize_name(req.name)
        doc = pages.get(project)
        for target in targets:
            files = doc["files"] if doc else []
            if cooldown is not None:
                files = [e for e in files if cooldown.holds(project, e) is None]
            if blocked is not None:
                files = [e for e in files if not _blocked(blocked, project, e)]
            guess = _best_wheel(req, project, files, target)
            if guess is not None:
                guesses.append(guess)
    return guesses


def _blocked(blocked: Callable[[str, str], bool], project: str, entry: dict[str, Any]) -> bool:
    facts = filename_facts(str(entry.get("filename", "")))
    return facts is not None and blocked(project, facts[1])


def _best_wheel(
    req: Requirement, project: str, files: list[dict[str, Any]], target: Target
) -> Wheel | None:
    """The newest release the specifier allows with a wheel for the target, and of its
    wheels the one the target's pip prefers."""
    rank = tag_ranks(target)
    python = Version(target.python)
    best: tuple[Version, int, dict[str, Any]] | None = None
    for entry in files:
        hashes = entry.get("hashes")
        sha256 = hashes.get("sha256") if isinstance(hashes, dict) else None
        if entry.get("yanked") or not sha256:
            continue
        try:
            _, version, _, tags = parse_wheel_filename(str(entry.get("filename", "")))
            requires_python = SpecifierSet(str(entry.get("requires-python") or ""))
        except (InvalidWheelFilename, InvalidSpecifier):
            continue
        score = min((rank[t] for t in tags if t in rank), default=None)
        if (
            score is None
            # No pre-releases unless the specifier names one, as uv and pip do.
            or not req.specifier.contains(version, prereleases=bool(req.specifier.prereleases))
            or not requires_python.contains(python, prereleases=True)
        ):
            continue
        if best is None or (version, -score) > (best[0], -best[1]):
            best = (version, score, {**entry, "sha256": sha256})
    if best is None:
        return None
    version, _, entry = best
    size = entry.get("size")
    return Wheel(
        project=project,
        version=str(version),
        filename=str(entry["filename"]),
        url=str(entry["url"]),
        sha256=str(entry["sha256"]),
        size=size if isinstance(size, int) else None,
    )
