"""Shared fixtures: real moto_server and devpi-server processes, a local upstream index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mirror.core.config import DevpiConfig, StorageConfig
from mirror.core.storage import BlobStore, LocalStore, S3Store
from mirror.devpi.server import DevpiProcess
from testkit.servers import MotoServer, aws_test_credentials, free_port
from testkit.upstream import Upstream
from tests.support.debian import require_debian_tool
from tests.support.hub_upstream import HubUpstream

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


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    """A store on local disk, then on a real S3 endpoint (moto): each store-level test
    runs on both backends."""
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
    else:
        moto: MotoServer = request.getfixturevalue("moto")
        bucket = request.getfixturevalue("s3_bucket")
        yield S3Store(
            StorageConfig(
                backend="s3", bucket=bucket, prefix="pfx", endpoint_url=moto.url, region="us-east-1"
            )
        )


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


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Real SavedModels made with TensorFlow (in a subprocess) and their expected outputs."""
    out = tmp_path_factory.mktemp("models")
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "tests.support.make_models", str(out)],
        check=True,
        cwd=root,
        capture_output=True,
    )
    return out, json.loads((out / "expected.json").read_text())


@pytest.fixture(scope="session")
def nginx() -> str:
    """Debian's nginx, the engine behind the fleet entry point."""
    return require_debian_tool("nginx", "nginx-light")


@pytest.fixture
def hub_up() -> Iterator[HubUpstream]:
    """A local tfhub.dev (tests.support.hub_upstream)."""
    with HubUpstream() as up:
        yield up


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def bubblewrap() -> None:
    """The build sandbox's engine: installed when root, else the test is skipped."""
    require_debian_tool("bwrap", "bubblewrap")
