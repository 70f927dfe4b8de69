"""Dependency closure per target: uv resolves, packaging.tags picks the wheel. pip's
--platform does not evaluate environment markers for the target (it uses the interpreter
running pip); `uv pip compile --python-platform` does, and its pylock output lists every
candidate wheel with url, size and sha256. We then choose, per package, the wheel the
target's installer would prefer."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from mirror.core.children import die_with_parent, scrubbed_env
from mirror.core.config import Target
from mirror.core.licenses import License
from mirror.core.redact import bounded, scrub_url
from mirror.core.timestamps import rfc3339_utc
from mirror.pypi.errors import ResolveError


class Role(StrEnum):
    """Why a file is in an environment's manifest for a target."""

    CLOSURE = "closure"  # installed by the closure: what `tfmirror lock` pins
    SOURCE = "source"  # the sdist a closure wheel was built from (older nodes build it)
    BUILD = "build"  # a build requirement, or a build backend nodes install projects with


@dataclass(frozen=True)
class BuiltFrom:
    """Where a wheel the mirror built came from, and with what (PEP 517 build in the
    sandbox): shown on the index page, the status page and in the manifest."""

    sdist: str  # the sdist's file name
    sdist_sha256: str
    python: str  # the interpreter that built it, e.g. "CPython 3.10.13"
    requires: tuple[str, ...]  # the build requirements' wheels, as name==version
    requires_sha256: tuple[str, ...]  # ... and their sha256, each mirrored beside it
    built_at: str
    tools: str  # e.g. "uv 0.13.9; auditwheel 6.8.2"

    def as_json(self) -> dict[str, object]:
        return {
            **self.__dict__,
            "requires": list(self.requires),
            "requires_sha256": list(self.requires_sha256),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> BuiltFrom:
        return cls(
            sdist=str(doc["sdist"]),
            sdist_sha256=str(doc["sdist_sha256"]),
            python=str(doc.get("python", "")),
            requires=tuple(doc.get("requires", ())),
            requires_sha256=tuple(doc.get("requires_sha256", ())),
            built_at=str(doc.get("built_at", "")),
            tools=str(doc.get("tools", "")),
        )


@dataclass(frozen=True)
class Wheel:
    """A file of a closure (a wheel, or an sdist kept beside the wheel built from it)."""

    project: str  # canonical name
    version: str
    filename: str
    url: str  # upstream's; "" for a wheel the mirror built
    sha256: str
    size: int | None
    # What installers read from the index besides the file (PEP 691/700/658/592):
    upload_time: str | None = None  # upstream's, ISO 8601 UTC
    requires_python: str | None = None  # from the wheel's own METADATA
    metadata_sha256: str | None = None  # the METADATA file, a blob of its own
    yanked: bool | str = False  # upstream's: True, or the reason given
    role: Role = Role.CLOSURE
    built_from: BuiltFrom | None = None
    # Read from its METADATA at sync (mirror.pypi.package_licenses); None: a manifest
    # written before licences were recorded, until the next sync fills it in.
    license: License | None = None

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")

    def as_json(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "project": self.project,
            "version": self.version,
            "filename": self.filename,
            "sha256": self.sha256,
            "size": self.size,
            "url": scrub_url(self.url),  # written: manifests travel in bundles, snapshots
            "upload_time": self.upload_time,
            "requires_python": self.requires_python,
            "metadata_sha256": self.metadata_sha256,
            "yanked": self.yanked,
        }
        # Written only when they say something: a closure of upstream wheels reads
        # (and hashes) as it did before built wheels existed.
        if self.role is not Role.CLOSURE:
            doc["role"] = str(self.role)
        if self.built_from is not None:
            doc["built_from"] = self.built_from.as_json()
        if self.license is not None:
            doc["license"] = self.license.as_json()
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Wheel:
        yanked = doc.get("yanked", False)
        built = doc.get("built_from")
        return cls(
            project=doc["project"],
            version=doc["version"],
            filename=doc["filename"],
            url=doc.get("url", ""),
            sha256=doc["sha256"],
            size=doc.get("size"),
            upload_time=doc.get("upload_time"),
            requires_python=doc.get("requires_python"),
            metadata_sha256=doc.get("metadata_sha256"),
            yanked=yanked if isinstance(yanked, (bool, str)) else bool(yanked),
            role=Role(doc.get("role", Role.CLOSURE)),
            built_from=BuiltFrom.from_json(built) if isinstance(built, dict) else None,
            license=License.from_json(doc["license"]) if "license" in doc else None,
        )

    @property
    def licensed(self) -> License:
        """Its licence; one not recorded yet reads as unknown."""
        return self.license or License.from_json(None)


_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")
_LEGACY_MANYLINUX = {"manylinux2014": (2, 17), "manylinux2010": (2, 12), "manylinux1": (2, 5)}
_MUSL = re.compile(r"^musllinux_(\d+)_(\d+)_(\w+)$")
_MAC = re.compile(r"^macosx_(\d+)_(\d+)_(\w+)$")
_UV_GLIBC = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)


def _glibc(platform: str) -> tuple[int, int, str] | None:
    m = _MANYLINUX.match(platform)
    if m:
        return int(m.group(1)), int(m.group(2)), m.group(3)
    for legacy, (major, minor) in _LEGACY_MANYLINUX.items():
        if platform.startswith(legacy + "_"):
            return major, minor, platform[len(legacy) + 1 :]
    return None


def platforms_for(platform: str) -> list[str]:
    """Every platform tag an installer on `platform` accepts, most preferred first."""
    glibc = _glibc(platform)
    if glibc:
        major, top, arch = glibc
        out: list[str] = []
        for minor in range(top, 4, -1):
            out.append(f"manylinux_{major}_{minor}_{arch}")
            for legacy, version in _LEGACY_MANYLINUX.items():
                if version == (major, minor):
                    out.append(f"{legacy}_{arch}")
        return out
    m = _MUSL.match(platform)
    if m:
        major, top, arch = int(m.group(1)), int(m.group(2)), m.group(3)
        return [f"musllinux_{major}_{minor}_{arch}" for minor in range(top, -1, -1)]
    m = _MAC.match(platform)
    if m:
        return list(mac_platforms((int(m.group(1)), int(m.group(2))), m.group(3)))
    return [platform]


def target_tags(target: Target) -> list[Tag]:
    """The target's supported tags in preference order, as pip would compute them there."""
    version = target.python_tuple
    platforms = platforms_for(target.platform)
    return [
        *cpython_tags(version, platforms=platforms),
        *compatible_tags(version, interpreter=f"cp{version[0]}{version[1]}", platforms=platforms),
    ]


@functools.cache
def tag_ranks(target: Target) -> Mapping[Tag, int]:
    """Each tag the target supports, with its rank in pip's preference (0 best). Kept per
    target: a closure asks for every package, and building the list is ~2 ms."""
    return MappingProxyType({tag: i for i, tag in enumerate(target_tags(target))})


def uv_platform(target: Target) -> tuple[str, dict[str, str]]:
    """uv's --python-platform for a wheel platform tag, plus any env it needs."""
    platform = target.platform
    glibc = _glibc(platform)
    if glibc:
        _, minor, arch = glibc
        fits = [v for v in _UV_GLIBC if v <= minor]
        if not fits:
            # Older than uv's oldest: resolve as manylinux2014; tags still pick what fits.
            return f"{arch}-manylinux2014", {}
        return f"{arch}-manylinux_2_{max(fits)}", {}
    musl = _MUSL.match(platform)
    if musl:
        return f"{musl.group(3)}-unknown-linux-musl", {}
    m = _MAC.match(platform)
    if m:
        arch = "aarch64" if m.group(3) == "arm64" else "x86_64"
        return f"{arch}-apple-darwin", {"MACOSX_DEPLOYMENT_TARGET": f"{m.group(1)}.{m.group(2)}"}
    windows = {"win_amd64": "x86_64", "win_arm64": "aarch64", "win32": "i686"}
    return f"{windows[platform]}-pc-windows-msvc", {}


def uv_binary() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def compile_lock(
    requirements: tuple[str, ...],
    target: Target,
    index: str,
    constraints: tuple[str, ...] = (),
    find_links: Path | None = None,
) -> str:
    """`index`: the sync's local index (mirror.pypi.local_index), which alone reaches
    upstream. `find_links`: a folder of wheels the mirror built, offered beside it."""
    platform, env = uv_platform(target)
    with tempfile.TemporaryDirectory(prefix="tfmirror-resolve-") as tmp:
        req_in = Path(tmp) / "requirements.in"
        req_in.write_text("\n".join(requirements) + "\n")
        bounds = []
        if constraints:
            (Path(tmp) / "constraints.txt").write_text("\n".join(constraints) + "\n")
            bounds = ["--constraints", str(Path(tmp) / "constraints.txt")]
        out = Path(tmp) / "pylock.toml"
        cmd = [
            uv_binary(),
            "pip",
            "compile",
            "--quiet",
            "--no-config",
            "--no-header",
            # The local index keeps what uv would cache, for the whole sync; its port
            # changes each sync, so uv's cache would only grow with dead entries.
            "--no-cache",
            # No interpreter is looked for, let alone downloaded: wheels only, nothing
            # runs (on a pyenv host, finding "python3.10" through its shims and then
            # trying to download one took 8 s per target).
            "--python",
            sys.executable,
            "--python-version",
            target.python,
            "--python-platform",
            platform,
            "--only-binary",
            ":all:",
            "--format",
            "pylock.toml",
            "--default-index",
            index,
            "--index-strategy",
            "first-index",
            *bounds,
            *(["--find-links", str(find_links)] if find_links is not None else []),
            str(req_in),
            "-o",
            str(out),
        ]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            # No proxy either: uv reads only the local index, on loopback.
            env=scrubbed_env(**env, UV_NO_PROGRESS="1", UV_PYTHON_DOWNLOADS="never"),
            check=False,
            preexec_fn=die_with_parent,
            start_new_session=True,  # a terminal's Ctrl-C is for tfmirror, which stops it
        )
        if proc.returncode != 0:
            raise ResolveError(_uv_reason(proc.stderr))
        return out.read_text()


def _uv_reason(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    # uv decorates its report with box-drawing marks; keep the words.
    text = " ".join(ln.lstrip("\u00d7\u2570\u2500\u25b6 ").strip() for ln in lines)
    text = text.removeprefix("error: ")
    return text or "uv pip compile failed with no message"  # a Failure bounds it


_PLAIN_WHEEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]*\.whl")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def best_wheel(package: dict[str, Any], target: Target) -> dict[str, Any] | None:
    """Of a locked package's wheels, the one the target's pip would install (with its
    file name under "filename"), or None if none fits the target."""
    name = canonicalize_name(package["name"])
    rank = tag_ranks(target)
    best: tuple[int, dict[str, Any]] | None = None
    for wheel in package.get("wheels", []):
        filename = str(wheel.get("name") or str(wheel["url"]).rsplit("/", 1)[-1])
        if not _PLAIN_WHEEL.fullmatch(filename):
            # The name becomes a file in devpi and a link in pages: nothing but a name.
            raise ResolveError(
                f"{name}: the upstream index lists a file named {bounded(filename, 200)!r}, "
                "which is not a plain wheel file name; refusing the index's answer"
            )
        try:
            _, _, _, tags = parse_wheel_filename(filename)
        except InvalidWheelFilename:
            continue
        score = min((rank[t] for t in tags if t in rank), default=None)
        if score is not None and (best is None or score < best[0]):
            best = (score, {**wheel, "filename": filename})
    return None if best is None else best[1]


def no_wheel(package: dict[str, Any], target: Target) -> str:
    return (
        f"{canonicalize_name(package['name'])} {package.get('version', '')}: no wheel for "
        f"target {target.id} (python {target.python}, {target.platform}); pin a version "
        "that has one, drop the target, or let the mirror build it ([pypi] sdists = "
        '"build")'
    )


def select_wheels(lock_text: str, target: Target) -> list[Wheel]:
    """Choose, for each locked package, the wheel the target's pip would install."""
    chosen: list[Wheel] = []
    for package in tomllib.loads(lock_text).get("packages", []):
        wheel = best_wheel(package, target)
        if wheel is None:
            raise ResolveError(no_wheel(package, target))
        chosen.append(as_wheel(package, wheel))
    return sorted(chosen, key=lambda w: w.project)


def as_wheel(package: dict[str, Any], wheel: dict[str, Any]) -> Wheel:
    """A locked file (a wheel, or an sdist), its hash and size checked for form."""
    filename = str(wheel.get("filename") or str(wheel["url"]).rsplit("/", 1)[-1])
    hashes = wheel.get("hashes") or {}
    sha256 = hashes.get("sha256") if isinstance(hashes, dict) else None
    if not sha256:
        raise ResolveError(f"{filename}: the upstream index lists no sha256")
    if not _SHA256.fullmatch(str(sha256)):
        raise ResolveError(f"{filename}: the upstream's sha256 is not 64 hex digits")
    size = wheel.get("size")
    return Wheel(
        project=canonicalize_name(package["name"]),
        version=str(package["version"]),
        filename=filename,
        url=str(wheel.get("url", "")),
        sha256=str(sha256),
        size=int(size) if isinstance(size, int) else None,
        upload_time=rfc3339_utc(wheel.get("upload-time")),  # a TOML datetime in the lock
    )


def resolve_target(
    requirements: tuple[str, ...],
    target: Target,
    index: str,
    constraints: tuple[str, ...] = (),
    find_links: Path | None = None,
) -> list[Wheel]:
    lock = compile_lock(requirements, target, index, constraints, find_links)
    return select_wheels(lock, target)
