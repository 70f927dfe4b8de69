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
