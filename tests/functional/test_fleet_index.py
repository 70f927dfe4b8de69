"""The index pip and uv read: the fronts' pages, with upload-time, size, core-metadata
and yanked, linking to the files devpi holds. Real devpi, real uv and pip."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from mirror.core.config import Config, DevpiConfig
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from mirror.proxy.nginx import entry_point
from mirror.pypi.manifest import load_manifest, save_manifest
from mirror.pypi.resolve import uv_binary
from mirror.pypi.sync import PypiSync
from testkit.mirror_env import make_config
from testkit.servers import clean_pip_env, make_venv, pip_install
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tfmirror.app import create_app
from tfmirror.services import services_for_sync

PEP691 = "application/vnd.pypi.simple.v1+json"
ALPHA_UPLOADED = "2024-03-01T10:00:00.000000Z"


def sync(config: Config) -> None:
    store = open_store(config.storage)
    with services_for_sync(config, store) as devpi:
        report = PypiSync(config, store, devpi).run()
    assert report.ok, report.failures


@contextmanager
def fronts(config: Config) -> Iterator[str]:
    """The web front as `tfmirror up` runs it without nginx; yields the fleet's index-url."""
    with WebServer(create_app(config), config.web.host, config.web.port):
        yield entry_point(config, proxied=False).index_url


def uv(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **clean_pip_env(),
        "UV_NO_CONFIG": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_CACHE_DIR": os.environ["UV_CACHE_DIR"],
        "UV_NO_PROGRESS": "1",
    }
    return subprocess.run(
        [uv_binary(), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def uv_install(venv: Path, index_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    made = uv("venv", "--python", sys.executable, str(venv))
    assert made.returncode == 0, made.stderr
    return uv("pip", "install", "--python", str(venv), "--default-index", index_url, *args)


@pytest.fixture
def mirrored(tmp_path: Path, upstream: Upstream, devpi: DevpiConfig) -> Config:
    upstream.add(
        WheelSpec("alpha", "1.0", requires=["beta"], requires_python=">=3.8"),
        uploaded=ALPHA_UPLOADED,
    )
    upstream.add(WheelSpec("beta", "1.0"), uploaded="2023-05-01T00:00:00Z")
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
    sync(config)
    return config


def test_pages_carry_upload_time_size_and_core_metadata_whose_hash_holds(
    mirrored: Config, upstream: Upstream
) -> None:
    alpha = upstream.files["alpha-1.0-py3-none-any.whl"]
    with fronts(mirrored) as index_url:
        page = f"{index_url}alpha/"
        doc = requests.get(page, headers={"Accept": PEP691}, timeout=10).json()
        (entry,) = doc["files"]
        assert doc["meta"]["api-version"] == "1.1" and doc["versions"] == ["1.0"]
        assert entry["upload-time"] == ALPHA_UPLOADED
        assert entry["size"] == len(alpha.data)
        assert entry["hashes"] == {"sha256": alpha.sha256}
        assert entry["requires-python"] == ">=3.8"
        assert entry["core-metadata"] == {"sha256": alpha.metadata_sha256}
        # PEP 658: the metadata file sits beside the file, and hashes as declared.
        url = requests.compat.urljoin(page, entry["url"])
        metadata = requests.get(url + ".metadata", timeout=10)
        assert hashlib.sha256(metadata.content).hexdigest() == alpha.metadata_sha256
        # The file link leads to devpi's bytes.
        wheel = requests.get(url, timeout=10)
        assert wheel.url.startswith(mirrored.devpi.url)
        assert hashlib.sha256(wheel.content).hexdigest() == alpha.sha256
        html = requests.get(page, timeout=10).text
        assert f'data-core-metadata="sha256={alpha.metadata_sha256}"' in html
        assert 'data-requires-python="&gt;=3.8"' in html


def test_uv_exclude_newer_installs_through_the_mirror_and_refuses_a_date_before_the_release(
    mirrored: Config, tmp_path: Path
) -> None:
    with fronts(mirrored) as index_url:
        ok = uv_install(tmp_path / "after", index_url, "--exclude-newer", "2024-06-01", "alpha")
        assert ok.returncode == 0, ok.stderr
        assert any((tmp_path / "after").glob("lib/python*/site-packages/alpha/__init__.py"))
        before = uv_install(
            tmp_path / "before", index_url, "--exclude-newer", "2024-02-01", "alpha"
        )
        assert before.returncode != 0
        assert "alpha" in before.stderr and "exclude-newer" in before.stderr, before.stderr
    # devpi's own pages carry no upload-time: uv refuses the release whatever the date,
    # which is why the fleet reads the fronts' pages.
    through_devpi = uv_install(
        tmp_path / "devpi", mirrored.devpi.index_url, "--exclude-newer", "2030-01-01", "alpha"
    )
    assert through_devpi.returncode != 0
    assert "exclude-newer" in through_devpi.stderr, through_devpi.stderr


def test_an_upload_time_written_oddly_is_served_as_rfc3339_utc_or_not_at_all(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    # uv refuses a whole project page over one upload-time it cannot read; the release
    # before passed on whatever Python could parse ("2024-01-02"), into its manifests.
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta", "gamma"]))
    upstream.add(WheelSpec("beta", "1.0"))
    upstream.add(WheelSpec("gamma", "1.0"))
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
    sync(config)
    store = open_store(config.storage)
    odd = {"alpha": "2024-01-02", "beta": "2024-01-02T03:04:05+02:00", "gamma": "yesterday"}
    manifest = load_manifest(store, "default", "py3.11-manylinux_2_28_x86_64")
    assert manifest is not None
    manifest.files = [replace(w, upload_time=odd[w.project]) for w in manifest.files]
    save_manifest(store, manifest)
    with fronts(config) as index_url:
        times = {}
        for project in odd:
            doc = requests.get(f"{index_url}{project}/", headers={"Accept": PEP691}, timeout=10)
            (entry,) = doc.json()["files"]
            times[project] = entry.get("upload-time")
        assert times == {
            "alpha": "2024-01-02T00:00:00Z",
            "beta": "2024-01-02T01:04:05Z",
            "gamma": None,
        }
        installed = uv_install(tmp_path / "node", index_url, "alpha")
        assert installed.returncode == 0, installed.stderr


def test_uv_lock_then_sync_frozen_on_a_node_installs_from_the_locked_mirror_urls(
    mirrored: Config, tmp_path: Path
) -> None:
    project = tmp_path / "app"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["alpha"]\n\n[tool.uv]\npackage = false\n'
    )
    with fronts(mirrored) as index_url:
        locked = uv("lock", "--default-index", index_url, "--python", sys.executable, cwd=project)
        assert locked.returncode == 0, locked.stderr
        lock = tomllib.loads((project / "uv.lock").read_text())
        alpha = next(p for p in lock["package"] if p["name"] == "alpha")
        assert alpha["source"] == {"registry": index_url}
        (wheel,) = alpha["wheels"]
        assert wheel["url"].startswith(index_url.removesuffix("+simple/") + "+f/")
        assert "upload-time" in wheel and wheel["size"] > 0
        synced = uv("sync", "--frozen", "--python", sys.executable, cwd=project)
        assert synced.returncode == 0, synced.stderr
    site = list((project / ".venv").glob("lib/python*/site-packages/alpha/__init__.py"))
    assert site, synced.stderr


def test_a_release_yanked_upstream_is_shown_yanked_with_its_reason(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    hosted = upstream.add(WheelSpec("alpha", "1.0"))
    # A pinned release stays installable when yanked (PEP 592), so it stays mirrored.
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha==1.0"])
    sync(config)
    hosted.yanked = "broken build"
    sync(config)
    with fronts(config) as index_url:
        doc = requests.get(f"{index_url}alpha/", headers={"Accept": PEP691}, timeout=10).json()
        assert doc["files"][0]["yanked"] == "broken build"
        assert 'data-yanked="broken build"' in requests.get(f"{index_url}alpha/", timeout=10).text
        pip = pip_install(make_venv(tmp_path / "venv"), index_url, "alpha==1.0")
    assert pip.returncode == 0, pip.stderr
    assert "Reason for being yanked: broken build" in pip.stderr


def test_an_upstream_that_lies_about_core_metadata_is_refused_and_the_last_closure_stays(
    mirrored: Config, upstream: Upstream
) -> None:
    liar = upstream.add(WheelSpec("alpha", "2.0", requires=["beta"]))
    liar.lies_about_metadata = True
    store = open_store(mirrored.storage)
    with services_for_sync(mirrored, store) as devpi:
        report = PypiSync(mirrored, store, devpi).run()
    reasons = {f.name: f.reason for f in report.failures}
    assert "upstream declares core-metadata sha256" in reasons["alpha-2.0-py3-none-any.whl"]
    assert "not committed" in reasons["default/py3.11-manylinux_2_28_x86_64"]
    with fronts(mirrored) as index_url:
        doc = requests.get(f"{index_url}alpha/", headers={"Accept": PEP691}, timeout=10).json()
    assert [f["filename"] for f in doc["files"]] == ["alpha-1.0-py3-none-any.whl"]
