"""The cooldown: nothing younger than [pypi] min_age enters, by upstream's upload-time.

A local PEP 691 upstream with releases of known ages; real devpi, real pip."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mirror.core.config import Config, DevpiConfig
from mirror.core.storage import BlobStore, open_store
from mirror.pypi.cooldown import read_held
from mirror.pypi.manifest import load_manifest
from mirror.pypi.sync import PypiSync, SyncReport
from sync_jobs.page import render_page
from sync_jobs.status import collect_status
from testkit.mirror_env import LINUX, make_config
from testkit.servers import make_venv, pip_install
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tfmirror.services import services_for_sync

LINUX_ID = "py3.11-manylinux_2_28_x86_64"


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sync(config: Config) -> tuple[SyncReport, BlobStore]:
    store = open_store(config.storage)
    with services_for_sync(config, store) as devpi:
        return PypiSync(config, store, devpi).run(), store


def versions(store: BlobStore, env: str = "default") -> dict[str, str]:
    manifest = load_manifest(store, env, LINUX_ID)
    assert manifest is not None
    return {w.project: w.version for w in manifest.files}


def installed(venv: Path, module: str) -> str:
    return subprocess.run(
        [str(venv), "-c", f"import {module}; print({module}.VERSION)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_a_cooldown_takes_the_older_release_and_pip_through_the_mirror_installs_it(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0"), uploaded=ago(days=30))
    upstream.add(WheelSpec("alpha", "2.0"), uploaded=ago(hours=1))
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"], pypi={"min_age": "7d"})

    report, store = sync(config)

    assert report.ok, report.failures
    assert versions(store) == {"alpha": "1.0"}
    assert upstream.hits["alpha-2.0-py3-none-any.whl"] == 0  # not even fetched
    venv = make_venv(tmp_path / "venv")
    proc = pip_install(venv, config.devpi.index_url, "alpha")
    assert proc.returncode == 0, proc.stderr
    assert installed(venv, "alpha") == "1.0"
    # The page says what is held back, and from when it may enter.
    (held,) = read_held(store)
    assert (held.project, held.version) == ("alpha", "2.0")
    eligible = datetime.fromisoformat(str(held.eligible).replace("Z", "+00:00"))
    left = eligible - datetime.now(UTC)
    assert timedelta(days=6, hours=22) < left < timedelta(days=7)
    status = collect_status(config, store, config.web.base_url)
    assert status.as_json()["held_back"][0]["version"] == "2.0"
    assert "<code>alpha 2.0</code>" in render_page(status)


def test_a_pin_only_a_too_young_release_meets_keeps_the_last_closure_until_exempted(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0"), uploaded=ago(days=30))
    upstream.add(WheelSpec("alpha", "2.0"), uploaded=ago(hours=1))
    week = {"min_age": "7d"}
    assert sync(make_config(tmp_path, upstream.index_url, devpi, ["alpha"], pypi=week))[0].ok
    pinned = make_config(tmp_path, upstream.index_url, devpi, ["alpha==2.0"], pypi=week)

    report, store = sync(pinned)

    (failure,) = report.failures
    assert failure.name == f"default/{LINUX_ID}"
    assert "alpha 2.0 held back by cooldown until 20" in failure.reason
    assert versions(store) == {"alpha": "1.0"}  # the last closure stays served

    # An urgent fix is let through by name.
    exempt = {**week, "cooldown_exempt": ["alpha==2.0"]}
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha==2.0"], pypi=exempt)
    report, store = sync(config)
    assert report.ok, report.failures
    assert versions(store) == {"alpha": "2.0"}


def test_a_file_with_no_upload_time_is_held_back_and_named(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0")).uploaded = None  # type: ignore[assignment]
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"], pypi={"min_age": "1d"})

    report, _ = sync(config)

    (failure,) = report.failures
    assert "alpha 1.0 held back by cooldown: upstream gives no upload-time" in failure.reason


def test_each_environment_has_its_own_cooldown_and_a_release_enters_once_old_enough(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    """min_age per environment; and a held-back release enters at the first sync after
    it is old enough, though no page changed (the no-op check would keep the closure)."""
    upstream.add(WheelSpec("alpha", "1.0"), uploaded=ago(days=30))
    upstream.add(WheelSpec("alpha", "2.0"), uploaded=ago(seconds=0))
    config = make_config(
        tmp_path,
        upstream.index_url,
        devpi,
        [],
        environments={
            "careful": {"requirements": ["alpha"], "targets": [LINUX], "min_age": "3s"},
            "eager": {"requirements": ["alpha"], "targets": [LINUX], "min_age": "0"},
        },
        pypi={"min_age": "30d"},
    )

    report, store = sync(config)

    assert report.ok, report.failures
    assert versions(store, "careful") == {"alpha": "1.0"}
    assert versions(store, "eager") == {"alpha": "2.0"}
    report, store = sync(config)  # nothing changed upstream: the closures are kept
    assert report.ok and versions(store, "careful") == {"alpha": "1.0"}
    time.sleep(3.5)
    report, store = sync(config)
    assert report.ok, report.failures
    assert versions(store, "careful") == {"alpha": "2.0"}
    assert read_held(store) == []
