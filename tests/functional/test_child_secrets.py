"""The mirror's secrets stay in the mirror's process: the servers it starts (devpi,
network-facing) and the tools it runs (uv) get the scrubbed environment, so none is in
their /proc/<pid>/environ for whatever runs beside them or through them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mirror.core.config import DevpiConfig, Target
from mirror.devpi.server import DevpiProcess
from mirror.pypi import resolve
from mirror.pypi.errors import ResolveError
from testkit.servers import free_port

SECRETS = {
    "TFMIRROR_ADMIN_TOKEN": "admin-secret-7e1d",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-90ab",
    "KAGGLE_KEY": "kaggle-secret-55c2",
    "TFMIRROR_DEVPI_PASSWORD": "devpi-secret-0f0f",
}


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    return SECRETS


def leaked(environ: bytes) -> list[str]:
    return [key for key, value in SECRETS.items() if value.encode() in environ]


def test_devpi_server_runs_without_the_mirrors_secrets(
    tmp_path: Path, secrets: dict[str, str]
) -> None:
    config = DevpiConfig(url=f"http://127.0.0.1:{free_port()}", serverdir=tmp_path / "devpi")
    with DevpiProcess(config, log=tmp_path / "devpi.log") as devpi:
        assert devpi.proc is not None
        environ = Path(f"/proc/{devpi.proc.pid}/environ").read_bytes()
    assert leaked(environ) == []
    assert b"PATH=" in environ  # scrubbed, not emptied


def test_uv_resolves_without_the_mirrors_secrets(
    tmp_path: Path, secrets: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = tmp_path / "environ"
    fake_uv = tmp_path / "uv"
    fake_uv.write_text(f"#!/bin/sh\ncat /proc/$$/environ > {seen}\nexit 1\n")
    fake_uv.chmod(0o755)
    monkeypatch.setattr(resolve, "uv_binary", lambda: str(fake_uv))
    with pytest.raises(ResolveError):
        resolve.compile_lock(("alpha",), Target("3.11", "manylinux_2_28_x86_64"), "http://x/")
    assert seen.read_bytes() and leaked(seen.read_bytes()) == []
    assert os.environ["KAGGLE_KEY"] == SECRETS["KAGGLE_KEY"]  # the mirror still has them
