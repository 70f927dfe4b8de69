"""Builds a tfmirror Config for a test: local upstream, its own store, devpi index and port."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from mirror.core.config import Config, DevpiConfig, Environment, Target, parse_config
from testkit.servers import free_port

LINUX = {"python": "3.11", "platform": "manylinux_2_28_x86_64"}
WINDOWS = {"python": "3.11", "platform": "win_amd64"}


def make_config(
    tmp: Path,
    upstream_index: str,
    devpi: DevpiConfig,
    requirements: list[str],
    targets: list[dict[str, str]] | None = None,
    storage: dict[str, Any] | None = None,
    managed_devpi: bool = False,
    environments: dict[str, dict[str, Any]] | None = None,
    pypi: dict[str, Any] | None = None,
) -> Config:
    """`requirements` and `targets` are the environment default; `environments` adds
    [pypi.environments.*] tables (with `requirements=[]`, the only ones); `pypi` adds
    or overrides other [pypi] keys."""
    index = f"u{uuid.uuid4().hex[:8]}/mirror"
    devpi_section: dict[str, Any] = {"url": devpi.url, "index": index}
    if not managed_devpi:
        devpi_section["serverdir"] = ""
    pypi_section: dict[str, Any] = {
        "upstream": upstream_index,
        "workers": 4,
        "timeout": 2,
        "retries": 1,
        # The local upstream has no setuptools, hatchling...: tests of backends set them.
        "build_backends": [],
    }
    if requirements or not environments:
        pypi_section |= {"requirements": requirements, "targets": targets or [LINUX]}
    if environments:
        pypi_section["environments"] = environments
    return parse_config(
        {
            "storage": storage or {"backend": "local", "path": "store"},
            "devpi": devpi_section,
            "pypi": pypi_section | (pypi or {}),
            "web": {"host": "127.0.0.1", "port": free_port()},
        },
        base=tmp,
    )


def operator_config(
    tmp: Path,
    upstream_index: str,
    requirements: list[str],
    storage: str = 'path = "data"',
    extra: str = "",
    environments: dict[str, list[str]] | None = None,
) -> Path:
    """A config file like an operator's: tfmirror starts and owns its devpi-server.
    `requirements` are the environment default's; `environments` adds
    [pypi.environments.*] tables, name -> requirements, each on the Linux target (with
    `requirements=[]`, the only ones)."""
    path = tmp / "tfmirror.toml"
    sets = [_on_linux("pypi", requirements)] if requirements or not environments else []
    for name, pins in (environments or {}).items():
        table = f"pypi.environments.{name}"
        sets.append(f"[{table}]\n{_on_linux(table, pins)}")
    tables = "\n".join(sets)
    path.write_text(f"""
[storage]
{storage}

[devpi]
url = "http://127.0.0.1:{free_port()}"
index = "fleet/pypi"

[web]
port = {free_port()}

[pypi]
upstream = "{upstream_index}"
timeout = 2
retries = 1
build_backends = []

{tables}{extra}""")
    return path


def _on_linux(table: str, requirements: list[str]) -> str:
    """The requirements key of `table` ([pypi] or an environment) and its one target."""
    return (
        f"requirements = {json.dumps(requirements)}\n\n[[{table}.targets]]\n"
        'python = "3.11"\nplatform = "manylinux_2_28_x86_64"\n'
    )


def env_target(config: Config) -> tuple[Environment, Target]:
    """The first environment and its first target: a one-environment config's only pair."""
    env = config.pypi.environments[0]
    return env, env.targets[0]
