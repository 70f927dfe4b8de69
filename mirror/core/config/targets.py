"""A target of [pypi] or of an environment: one (Python version, wheel platform) the fleet
runs, e.g. `{python = "3.11", platform = "manylinux_2_28_x86_64"}`; none listed means
the host's own."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirror.core.config.forms import resolve_path
from mirror.core.config.keys import Check, Form, Section, key, read_table
from mirror.core.errors import ConfigError
from mirror.core.platforms import PLATFORM_TAG, host_platform

_PYTHON_RE = re.compile(r"^3\.\d{1,2}$")
TARGETS_EXAMPLE = '[{python = "3.11", platform = "manylinux_2_28_x86_64"}]'


@dataclass(frozen=True)
class Target:
    """One (python version, wheel platform tag) the fleet runs."""

    python: str = key(
        "",
        '"3.11"',
        Check(lambda p: bool(_PYTHON_RE.match(p)), 'must look like "3.11"'),
        required=True,
    )
    platform: str = key(
        "",
        '"manylinux_2_28_x86_64"',
        Check(
            lambda platform: bool(PLATFORM_TAG.match(platform)),
            'must be a wheel platform tag such as "manylinux_2_28_x86_64", "win_amd64" '
            'or "macosx_12_0_arm64"',
        ),
        required=True,
    )
    # The Python that builds this target's extensions from sdists; empty: found on PATH
    # or in pyenv. Not part of the id: where a wheel was built does not change the target.
    interpreter: str = key(
        "",
        lambda read: f'"/usr/bin/python{read["python"]}"',
        form=Form(str, lambda s, name, path: str(resolve_path(s.base, path)) if path else ""),
        compare=False,
    )

    @property
    def id(self) -> str:
        return f"py{self.python}-{self.platform}"

    @property
    def python_tuple(self) -> tuple[int, int]:
        major, minor = self.python.split(".")
        return int(major), int(minor)


def host_target() -> Target:
    """The host's own Python and its most specific wheel platform tag."""
    platform = host_platform()
    if platform is None:
        raise ConfigError(
            "[[pypi.targets]]: cannot derive a wheel platform for this host; "
            'add a target, e.g. platform = "manylinux_2_28_x86_64"'
        )
    return Target(f"{sys.version_info.major}.{sys.version_info.minor}", platform)


def read(where: str, raw: Any, base: Path) -> Target:
    return read_table(Target, where, raw, base, validate)


def validate(s: Section, target: Target) -> None:
    interpreter = target.interpreter
    if interpreter:
        s.check(
            "interpreter",
            Path(interpreter).is_file() and os.access(interpreter, os.X_OK),
            s.raw["interpreter"],
            f"not an executable file; give the path of a Python {target.python or '3.x'} "
            "that builds this target's extensions",
        )


def _targets(s: Section, name: str, raw: Any) -> tuple[Target, ...]:
    targets = tuple(read(f"{s.name}.{name}[{i}]", t, s.base) for i, t in enumerate(raw))
    ids = [t.id for t in targets]
    dup = next((t for t in ids if ids.count(t) > 1), None)
    s.check(name, dup is None, dup, "each python/platform pair may appear once")
    return targets or (host_target(),)


# A list of targets, each once; none is the host's own.
TARGETS = Form(list, _targets)
