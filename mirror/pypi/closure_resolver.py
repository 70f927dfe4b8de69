"""A target's closure, as files: resolved with wheels only, building what has none. Code
from upstream (a setup.py, a build backend) never runs in the syncer's process,
resolution included: when the wheels alone (those the mirror built before offered as
find-links) give no closure, it is resolved again in the sandbox with sdists allowed,
the sdists with no wheel for the target are built there, and it is resolved once more
with wheels only (ClosureResolver.resolve lists the steps). A built wheel joins the
closure with its provenance (BuiltFrom), its sdist and its build requirements' wheels
listed beside it, so a node that must build can, offline. An sdist whose wheel a
manifest already lists is never built again: a no-op sync runs no sandbox at all."""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
import tomllib
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from mirror.core.config import Environment, Target
from mirror.core.errors import DownloadError, Refused, StoreError
from mirror.core.licenses import License
from mirror.core.quarantine import Quarantine
from mirror.core.sandbox import available
from mirror.core.sandbox_files import read_inside
from mirror.core.storage import BlobStore
from mirror.core.upstream import FetchPolicy, ProjectPages
from mirror.pypi.build_sandbox import (
    SANDBOX_INDEX,
    BuildPolicy,
    run_in_sandbox,
    scratch,
    tail,
    why_stopped,
)
from mirror.pypi.cooldown import Cooldown, Held
from mirror.pypi.core_metadata import metadata_in_store
from mirror.pypi.errors import MetadataError, ResolveError, SandboxResolveError
from mirror.pypi.file_facts import recorded_license
from mirror.pypi.interpreters import Interpreter, find_interpreter, host_interpreter
from mirror.pypi.local_index import LocalIndex
from mirror.pypi.package_licenses import license_of
from mirror.pypi.resolve import (
    Role,
    Wheel,
    as_wheel,
    best_wheel,
    no_wheel,
    resolve_target,
    tag_ranks,
    uv_binary,
    uv_platform,
)
from mirror.pypi.sdist_builder import BuildJob, SdistBuilder

log = logging.getLogger("tfmirror.pypi.sources")  # the name operators' log filters know
BUILDS_AT_ONCE = 2
MAX_ROUNDS = 5  # resolves in the sandbox that turn more projects to wheels only
MAX_LOCK = 16 * 1024**2
# uv's hint for a project that cannot be had as a wheel within the closure.
_WHEELS_REQUIRED = re.compile(r"Wheels are required for `([^`]+)`")


class ClosureResolver:
    """One sync's resolves, and the builds they need. Every environment's target asks
    here; an sdist is built once per sync and target Python, and a failed build is not
    tried again."""

    def __init__(
        self,
        store: BlobStore,
        pages: ProjectPages,
        fetch: FetchPolicy,
        policy: BuildPolicy,
        known: Mapping[str, Wheel],
        cooldown: Callable[[Environment], Cooldown],
        quarantine: Quarantine | None = None,
    ) -> None:
        self.store = store
        self.quarantine = quarantine or Quarantine()  # as the sync began: builds see none
        self.cooldown = cooldown  # each environment's, cut at the sync's start
        self.pages = pages
        self.fetch = fetch
        self.policy = policy
        # Every file a committed manifest lists, by sha256, and the built wheels among
        # them: what find-links offers, and where a reused wheel's sdist and tools are.
        self.files: dict[str, Wheel] = dict(known)
        self.built: dict[str, Wheel] = {s: w for s, w in known.items() if w.built_from}
        self.failed: dict[tuple[str, str], str] = {}
        self.builder = SdistBuilder(store, policy.caps, self.resolve_wheels)
        self._links = tempfile.TemporaryDirectory(prefix="tfmirror-built-")
        self._linked: set[str] = set()
        self._lock = threading.Lock()  # builds run side by side
        self._index: LocalIndex | None = None

    @property
    def builds(self) -> int:
        """Sandboxed builds this sync ran."""
        return self.builder.builds

    def close(self) -> None:
        if self._index is not None:
            self._index.__exit__(None, None, None)
        self._links.cleanup()

    def held(self) -> list[Held]:
        """What the cooldown kept out of every resolve so far."""
        return self._index.held() if self._index is not None else []

    def index(self) -> LocalIndex:
        """The sync's one local index: every resolver, the syncer's own included, reads
        upstream through it, so every page and file is held to the sync's fetch policy."""
        if self._index is None:
            index = LocalIndex(self.store, self.pages, self.fetch, self.quarantine)
            self._index = index.__enter__()
        return self._index

    def resolve_wheels(
        self,
        requirements: tuple[str, ...],
        target: Target,
        constraints: tuple[str, ...] = (),
        find_links: Path | None = None,
        cooldown: Cooldown | None = None,
    ) -> list[Wheel]:
        """A wheels-only closure, resolved on this host through the local index; each
        file named by its upstream address, as a manifest lists it."""
        index = self.index()
        wheels = resolve_target(requirements, target, index.url(cooldown), constraints, find_links)
        return [index.upstream(wheel) for wheel in wheels]

    def license_of(self, wheel: Wheel) -> License:
        """A resolved file's licence, from what is known of it: a manifest's record, else
        the METADATA blob it lists, else the METADATA the resolver read through the local
        index (no second fetch), else, for a wheel built here, the one in the store."""
        known = self.files.get(wheel.sha256)
        if known is not None and known.license is not None:
            return known.license
        if not wheel.is_wheel:
            return License.unknown("an sdist: its licence is its built wheel's")
        try:
            if wheel.metadata_sha256 and self.store.has_blob(wheel.metadata_sha256):
                return recorded_license(self.store, wheel.metadata_sha256)  # a manifest's
            if wheel.url.startswith("file:"):
                metadata = metadata_in_store(self.store, wheel)
            else:
                read = self.index().core_metadata(wheel.sha256)
                metadata = read if read is not None else metadata_in_store(self.store, wheel)
        except (MetadataError, StoreError, DownloadError, Refused) as exc:
            return License.unknown(f"its METADATA could not be read ({exc})")
        return license_of(metadata)

    # -- the closure -------------------------------------------------------------------
    def resolve(self, env: Environment, target: Target) -> list[Wheel]:
        """The target's closure, as files: wheels (built ones with their sdist and build
        requirements beside them). Raises ResolveError naming what failed. Resolved with
        wheels only first; only when that fails:

        1. the closure is resolved again *in the sandbox* (mirror.pypi.build_sandbox),
           sdists allowed: uv builds their metadata there, and reaches upstream only
           through the local index (mirror.pypi.local_index), which fetches every file
           verified into the store; rounds that prefer wheels (pip's --prefer-binary)
           keep the builds to what must be;
        2. each locked package with no wheel for the target is built from its sdist
           (mirror.pypi.sdist_builder), two side by side;
        3. the closure is resolved once more with wheels only, the new wheels as
           find-links."""
        try:
            return self._with_built(env, target)
        except ResolveError as first:
            if not self.policy.build:
                raise
            missing = available()
            if missing is not None:
                raise ResolveError(
                    f"{first}; building from sdists needs a sandbox: {missing}"
                ) from None
            self._build_missing(env, target)
        return self._with_built(env, target)

    def _find_links(self) -> Path | None:
        folder = Path(self._links.name)
        for sha256, wheel in self.built.items():
            if sha256 in self._linked:
                continue
            local = self.store.local_path(sha256)
            dest = folder / wheel.filename
            if local is not None:
                dest.unlink(missing_ok=True)
                dest.symlink_to(local)
            else:
                with self.store.open_blob(sha256) as blob, dest.open("wb") as out:
                    shutil.copyfileobj(blob, out)
            self._linked.add(sha256)
        return folder if self._linked else None

    def _with_built(self, env: Environment, target: Target) -> list[Wheel]:
        links = self._find_links()
        wheels = self.resolve_wheels(
            env.requirements, target, env.constraints, links, self.cooldown(env)
        )
        pinned = {w.project: w.version for w in wheels}
        out: dict[str, Wheel] = {}
        for wheel in wheels:
            if not wheel.url.startswith("file:"):
                out[wheel.sha256] = wheel
                continue
            built = self.built.get(wheel.sha256)
            if built is None or built.built_from is None:
                raise ResolveError(f"{wheel.filename}: offered as built here, but no build made it")
            out[built.sha256] = built
            beside = [built.built_from.sdist_sha256, *built.built_from.requires_sha256]
            for sha256 in beside:
                extra = self.files.get(sha256)
                if extra is None:
                    raise ResolveError(
                        f"{built.filename}: its sdist or a build requirement is lost"
                    )
                # A build requirement the closure pins to another version stays out of
                # this environment's index: nodes must not be offered a second one.
                if pinned.get(extra.project, extra.version) == extra.version:
                    out.setdefault(sha256, extra)
        return sorted(out.values(), key=lambda w: (w.project, w.role != Role.CLOSURE, w.filename))

    # -- 1. resolve in the sandbox --------------------------------------------------------
    def _build_missing(self, env: Environment, target: Target) -> None:
        interpreter = find_interpreter(target)
        resolver = interpreter or host_interpreter()
        index = self.index()
        # Side by side, each sandbox with its own socket to the index (TFX's three builds
        # took 21 s one after another); a project with no wheel in any release is built
        # from the first resolve on, while the others rounds decide the rest.
        with ThreadPoolExecutor(BUILDS_AT_ONCE, thread_name_prefix="build") as pool:
            started: dict[str, Future[None]] = {}  # a failed build raises from result()

            def start(packages: list[dict[str, Any]], sure_only: bool) -> list[str]:
                pins = tuple(f"{p['name']}=={p['version']}" for p in packages)
                wanted = []
                for package in self._sources(packages, target):
                    name = canonicalize_name(package["name"])
                    if sure_only and self._some_wheel(name, target):
                        continue
                    try:
                        bounds = (*env.constraints, *pins)
                        job = self._job(package, target, interpreter, bounds, self.cooldown(env))
                    except ResolveError:
                        if sure_only:
                            continue  # said once the closure is settled, if still needed
                        raise
                    wanted.append(job.source.sha256)
                    if job.source.sha256 not in started:
                        started[job.source.sha256] = pool.submit(self._build, job, index)
                return wanted

            first = partial(start, sure_only=True)
            packages = self._prefer_wheels(env, target, resolver, index, first)
            for sha256 in start(packages, sure_only=False):
                started[sha256].result()

    def _job(
        self,
        package: dict[str, Any],
        target: Target,
        interpreter: Interpreter | None,
        bounds: tuple[str, ...],
        cooldown: Cooldown,
    ) -> BuildJob:
        sdist = package.get("sdist")
        if not isinstance(sdist, dict):
            raise ResolveError(no_wheel(package, target) + "; upstream has no sdist either")
        listed = as_wheel(package, sdist)
        taken = self.index().entry(listed.sha256)
        if taken is None:
            raise ResolveError(f"{listed.filename}: not an sdist upstream lists")
        return BuildJob(
            canonicalize_name(package["name"]),
            str(package["version"]),
            taken.as_wheel(Role.SOURCE),
            target,
            interpreter,
            bounds,
            cooldown,
        )

    def _sources(self, packages: list[dict[str, Any]], target: Target) -> list[dict[str, Any]]:
        """The locked packages with no wheel for the target, here or upstream."""
        return [p for p in packages if best_wheel(p, target) is None and not self._have(p, target)]

    def _prefer_wheels(
        self,
        env: Environment,
        target: Target,
        python: Interpreter,
        index: LocalIndex,
        first: Callable[[list[dict[str, Any]]], object],
    ) -> list[dict[str, Any]]:
        """The closure with sdists allowed, building only what must be built (pip's
        --prefer-binary): a resolver allowed sdists picks the newest version, and a
        project whose newest release has no wheel for an old glibc may well have one in an
        older release. Built here, on a newer glibc, it would not install on that target.
        `first` is given the first closure, before the rounds that prefer wheels."""
        binary: set[str] = set()
        built: set[str] = set()  # must be built: with wheels only there is no closure
        packages = self._locked(env, target, python, index, binary)
        first(packages)
        for _ in range(MAX_ROUNDS):
            wheel_somewhere = {
                canonicalize_name(p["name"])
                for p in self._sources(packages, target)
                if self._some_wheel(canonicalize_name(p["name"]), target)
            } - built
            if not wheel_somewhere - binary:
                break
            trying = binary | wheel_somewhere
            log.info("%s/%s: resolving again, wheels only for %s", env.name, target.id, trying)
            try:
                packages = self._locked(env, target, python, index, trying)
                binary = trying
            except SandboxResolveError as exc:
                # uv names the projects whose wheels cannot make a closure: they are
                # built after all; the next round tries the others as wheels again.
                named = {canonicalize_name(n) for n in _WHEELS_REQUIRED.findall(exc.output)}
                if not named & trying:
                    break
                built |= named & trying
                log.info("%s/%s: %s must be built", env.name, target.id, named & trying)
        return packages

    def _some_wheel(self, project: str, target: Target) -> bool:
        """Upstream has a wheel for the target in some release of `project`."""
        doc = self.pages.get(project)
        supported = tag_ranks(target).keys()
        python = Version(target.python)
        for entry in (doc or {}).get("files", []):
            name = str(entry.get("filename", ""))
            if entry.get("yanked") or not name.endswith(".whl"):
                continue
            try:
                tags = parse_wheel_filename(name)[3]
                requires = SpecifierSet(str(entry.get("requires-python") or ""))
            except (InvalidWheelFilename, InvalidSpecifier):
                continue
            if tags & supported and requires.contains(python, prereleases=True):
                return True
        return False

    def _have(self, package: dict[str, Any], target: Target) -> bool:
        """A wheel built earlier (this sync, or listed in a manifest) fits the target."""
        name, want = canonicalize_name(package["name"]), str(package["version"])
        supported = tag_ranks(target).keys()
        for wheel in self.built.values():
            if wheel.project == name and wheel.version == want:
                _, _, _, tags = parse_wheel_filename(wheel.filename)
                if tags & supported:
                    return True
        return False

    def _locked(
        self,
        env: Environment,
        target: Target,
        python: Interpreter,
        index: LocalIndex,
        binary: set[str],
    ) -> list[dict[str, Any]]:
        """Resolve in the sandbox, sdists allowed except for the projects in `binary`."""
        with scratch() as work, index.session(self.cooldown(env)) as session:
            (work / "requirements.in").write_text("\n".join(env.requirements) + "\n")
            (work / "constraints.txt").write_text("\n".join(env.constraints) + "\n")
            platform, platform_env = uv_platform(target)
            argv = [
                uv_binary(), "pip", "compile", "--no-config", "--no-header",
                "--python-version", target.python, "--python-platform", platform,
                "--python", python.path, "--format", "pylock.toml",
                "--default-index", SANDBOX_INDEX,
                "--index-strategy", "first-index",
                "--constraints", "constraints.txt", "requirements.in", "-o", "pylock.toml",
                *(arg for name in sorted(binary) for arg in ("--only-binary", name)),
            ]  # fmt: skip
            outcome = run_in_sandbox(
                argv, work, python, session.socket, platform_env, self.policy.caps
            )
            why = why_stopped(outcome, self.policy.caps)
            try:
                lock = read_inside(work, "pylock.toml", MAX_LOCK) if outcome.ok else None
                packages = tomllib.loads(lock.decode()).get("packages") if lock else None
            except (Refused, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                why, packages = f"its lock is refused ({exc})", None
            if not isinstance(packages, list) or not all(isinstance(p, dict) for p in packages):
                raise SandboxResolveError(
                    f"resolving with sdists (in the sandbox) failed, {why}: {tail(outcome)}",
                    outcome.tail,
                )
            return packages

    # -- 2. build ---------------------------------------------------------------------
    def _build(self, job: BuildJob, index: LocalIndex) -> None:
        key = (job.source.sha256, job.target.python)
        with self._lock:
            failed = self.failed.get(key)
        if failed is not None:
            raise ResolveError(failed)
        try:
            done = self.builder.build(job, index)
        except ResolveError as exc:
            with self._lock:
                self.failed[key] = str(exc)
            raise
        with self._lock:
            self.built[done.wheel.sha256] = done.wheel
            self.files[done.wheel.sha256] = done.wheel
            self.files[done.source.sha256] = done.source
            self.files.update((w.sha256, w) for w in done.requires)
