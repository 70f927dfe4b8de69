"""The forms a key's value takes beyond a TOML scalar, shared by several sections:
paths (relative to the config file), folders the mirror may own, lists of PEP 508
requirements, lists of hosts, durations such as "7d", and base URLs."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement

from mirror.core.config.keys import Form, Section
from mirror.core.errors import ConfigError


def resolve_path(base: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base / path)


# A path relative to the config file's folder; `~` is the user's home.
PATH = Form(str, lambda s, name, value: resolve_path(s.base, str(value)))
# The same, or "" for none.
OPTIONAL_PATH = Form(str, lambda s, name, value: resolve_path(s.base, value) if value else None)

# Kernel views of the machine, not storage: writing there fails oddly or does harm.
_PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))


def folder_problem(path: Path) -> str | None:
    """Why `path` cannot become a folder of ours, without creating anything."""
    real = path.resolve()
    if any(real == fs or fs in real.parents for fs in _PSEUDO_FILESYSTEMS):
        return f"{real} is on a kernel filesystem"
    for candidate in (real, *real.parents):
        if candidate.exists():
            if not candidate.is_dir():
                return f"{candidate} is a file, not a folder"
            return None
    return None


def _requirement(where: str, i: int, value: Any) -> str:
    hint = 'a PEP 508 string such as "tensorflow>=2.16"'
    if not isinstance(value, str):
        raise ConfigError(f"[{where}[{i}] = {value!r}: must be {hint}")
    try:
        Requirement(value)
    except InvalidRequirement as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"[{where}[{i}] = {value!r}: not {hint} ({first})") from None
    return value


# A list of PEP 508 strings (requirements, constraints, exemptions), each checked.
REQUIREMENTS = Form(
    list,
    lambda s, name, raw: tuple(_requirement(f"{s.name}] {name}", i, r) for i, r in enumerate(raw)),
)


def _hosts(s: Section, name: str, raw: Any) -> tuple[str, ...]:
    for host in raw:
        plain = isinstance(host, str) and host and not any(c in host for c in "/:@ ")
        s.check(name, bool(plain), host, "list host names or addresses, without scheme or port")
    return tuple(h.lower() for h in raw)


# Host names or addresses, e.g. the internal hosts a redirect may lead to.
HOSTS = Form(list, _hosts)
HOSTS_EXAMPLE = '["files.internal.example", "10.0.0.5"]'

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(s: Section, name: str, raw: Any) -> float:
    if isinstance(raw, float):
        return raw  # the declared default, in seconds already
    match = _DURATION.match(raw)
    s.check(name, match is not None, raw, 'use a number with s, m, h or d, e.g. "7d" ("0": off)')
    assert match is not None
    return float(match.group(1)) * _UNIT[match.group(2)]


# A span such as "7d", "12h", "30m", "90s" or "0", in seconds.
DURATION = Form(str, _duration)


def is_base_url(url: str) -> bool:
    """An http(s) URL with a host and no credentials, query or fragment."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return False
    plain = not (parts.username or parts.query or parts.fragment)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and plain
