"""Shared fixtures: real moto_server and devpi-server processes, a local upstream index."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.config import DevpiConfig
from mirror.devpi_server import DevpiProcess
from tests.support.servers import MotoServer, aws_test_credentials, free_port
from tests.support.upstream import Upstream

DEVPI_TEST_PASSWORD = "devpi-test-password"


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    # uv's cache is keyed by URL; wheels built per test must never be served stale.
    os.environ["UV_CACHE_DIR"] = str(tmp_path_factory.mktemp("uv-cache"))
    os.environ["TFMIRROR_DEVPI_PASSWORD"] = DEVPI_TEST_PASSWORD
    os.environ.pop("TFMIRROR_CONFIG", None)
    aws_test_credentials()


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(moto: MotoServer, request: pytest.FixtureRequest) -> str:
    name = "t-" + request.node.name.lower().replace("_", "-")[:40].strip("-[]")
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name)
    moto.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def devpi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevpiConfig]:
    """One real devpi-server for the session; each test uses its own index on it."""
    base = tmp_path_factory.mktemp("devpi")
    config = DevpiConfig(
        url=f"http://127.0.0.1:{free_port()}", serverdir=base / "server", index="x/y"
    )
    with DevpiProcess(config, log=base / "devpi.log"):
        yield config


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
