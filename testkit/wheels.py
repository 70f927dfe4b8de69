"""Tiny but real wheels, built in memory with deterministic bytes."""

from __future__ import annotations

import base64
import hashlib
import io
import random
import zipfile
from dataclasses import dataclass, field

EPOCH = (2020, 1, 1, 0, 0, 0)


@dataclass
class WheelSpec:
    name: str
    version: str
    requires: list[str] = field(default_factory=list)
    tag: str = "py3-none-any"
    padding: int = 0  # extra bytes of payload, to make a wheel bigger (they compress away)
    noise: int = 0  # incompressible bytes, for a wheel that is big on the wire too
    requires_python: str = ""
    source: str = ""  # more of the package's __init__.py (runs on import)
    extra_files: dict[str, str] = field(default_factory=dict)  # more files: path -> text
    # More METADATA header lines, e.g. "License-Expression: MIT" or a Classifier.
    headers: list[str] = field(default_factory=list)

    @property
    def module(self) -> str:
        return self.name.replace("-", "_")

    @property
    def filename(self) -> str:
        return f"{self.module}-{self.version}-{self.tag}.whl"

    def metadata(self) -> bytes:
        lines = ["Metadata-Version: 2.1", f"Name: {self.name}", f"Version: {self.version}"]
        if self.requires_python:
            lines.append(f"Requires-Python: {self.requires_python}")
        lines += [f"Requires-Dist: {r}" for r in self.requires]
        lines += self.headers
        return ("\n".join(lines) + "\n").encode()


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel(spec: WheelSpec) -> bytes:
    dist_info = f"{spec.module}-{spec.version}.dist-info"
    files = {
        f"{spec.module}/__init__.py": (
            f'NAME = "{spec.name}"\nVERSION = "{spec.version}"\n'.encode()
            + b"# "
            + b"x" * spec.padding
            + b"\n"
            + spec.source.encode()
        ),
        **{path: text.encode() for path, text in spec.extra_files.items()},
        **(
            {f"{spec.module}/noise.bin": random.Random(spec.filename).randbytes(spec.noise)}
            if spec.noise
            else {}
        ),
        f"{dist_info}/METADATA": spec.metadata(),
        f"{dist_info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: tfmirror-tests\nRoot-Is-Purelib: true\n"
            f"Tag: {spec.tag}\n"
        ).encode(),
    }
    record = [_record_line(p, d) for p, d in files.items()] + [f"{dist_info}/RECORD,,"]
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for path, data in files.items():
            zf.writestr(zipfile.ZipInfo(path, EPOCH), data)
    return out.getvalue()


@dataclass
class SdistSpec:
    """An sdist whose build backend lives in the tree (PEP 517 backend-path): no build
    requirement to fetch, and its code is whatever the test writes into `backend`."""

    name: str
    version: str
    backend: str  # backend.py: must define build_wheel (and may do anything else)
    requires: list[str] = field(default_factory=list)

    @property
    def module(self) -> str:
        return self.name.replace("-", "_")

    @property
    def filename(self) -> str:
        return f"{self.module}-{self.version}.tar.gz"

    def pkg_info(self) -> str:
        # 2.1, not 2.2: a resolver must run the backend for metadata, in its sandbox.
        lines = ["Metadata-Version: 2.1", f"Name: {self.name}", f"Version: {self.version}"]
        return "\n".join(lines + [f"Requires-Dist: {r}" for r in self.requires]) + "\n"


def build_sdist(spec: SdistSpec) -> bytes:
    import tarfile

    root = f"{spec.module}-{spec.version}"
    files = {
        "PKG-INFO": spec.pkg_info(),
        "pyproject.toml": (
            '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        ),
        "backend.py": spec.backend,
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{path}")
            info.size, info.mtime, info.mode = len(data), 1577836800, 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


# The part of an in-tree backend that makes a real wheel; a test adds what it likes.
BACKEND = """
import base64, hashlib, os, zipfile

NAME, VERSION, REQUIRES = {name!r}, {version!r}, {requires!r}
MODULE = NAME.replace("-", "_")
DIST = f"{{MODULE}}-{{VERSION}}.dist-info"
WHEEL = "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
EXTRA = {{}}  # more files for the wheel: path -> text


def _metadata():
    lines = ["Metadata-Version: 2.1", f"Name: {{NAME}}", f"Version: {{VERSION}}"]
    return "\\n".join(lines + [f"Requires-Dist: {{r}}" for r in REQUIRES]) + "\\n"


def get_requires_for_build_wheel(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    os.makedirs(os.path.join(metadata_directory, DIST))
    with open(os.path.join(metadata_directory, DIST, "METADATA"), "w") as f:
        f.write(_metadata())
    return DIST


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    before_build()
    name = f"{{MODULE}}-{{VERSION}}-py3-none-any.whl"
    files = {{f"{{MODULE}}/__init__.py": f"VERSION = {{VERSION!r}}\\n", **EXTRA,
             f"{{DIST}}/METADATA": _metadata(),
             f"{{DIST}}/WHEEL": WHEEL}}
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        for path, text in files.items():
            data = text.encode()
            zf.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{{path}},sha256={{digest}},{{len(data)}}")
        record.append(f"{{DIST}}/RECORD,,")
        when = (2020, 1, 1, 0, 0, 0)
        zf.writestr(zipfile.ZipInfo(f"{{DIST}}/RECORD", when), "\\n".join(record) + "\\n")
    return name


def before_build():
    pass
"""


def in_tree_backend(
    name: str, version: str, requires: list[str] | None = None, extra: str = ""
) -> str:
    """A working backend's source; `extra` (more Python) may redefine before_build or
    fill EXTRA, and runs when the backend is imported."""
    return BACKEND.format(name=name, version=version, requires=requires or []) + extra
