"""The PyPI sync end to end: a local upstream, a real devpi-server, the real pip.

Each test gets its own devpi index and store; pip runs in a fresh venv with the
machine's pip config off, so "installs" means "installs from the mirror alone".
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from mirror.core.config import Config, DevpiConfig
from mirror.core.storage import BlobStore, open_store
from mirror.core.web_server import WebServer
from mirror.devpi.client import DevpiClient
from mirror.devpi.publish import WARM_STATE
from mirror.pypi import resolve
from mirror.pypi.fingerprint import FULL_RESOLVE_EVERY, fingerprint_key
from mirror.pypi.lag import read_lag
from mirror.pypi.lockfile import render_lock
from mirror.pypi.manifest import load_manifest, save_manifest
from mirror.pypi.sync import PypiSync, SyncReport
from testkit.mirror_env import LINUX, WINDOWS, make_config
from testkit.servers import make_venv
from testkit.servers import pip_install as install_from
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.conftest import DEVPI_TEST_PASSWORD
from tests.support.runner import runner_over
from tfmirror.app import create_app
from tfmirror.services import services_for_sync
from verify.gc import collect

LINUX_ID = "py3.11-manylinux_2_28_x86_64"
WINDOWS_ID = "py3.11-win_amd64"


def sync(config: Config) -> tuple[SyncReport, BlobStore]:
    store = open_store(config.storage)
    with services_for_sync(config, store) as devpi:
        return PypiSync(config, store, devpi).run(), store


def pip_install(venv_python: Path, config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    return install_from(venv_python, config.devpi.index_url, *args)


def offered(config: Config, *projects: str) -> dict[str, str]:
    """filename -> sha256 of what devpi offers for `projects`, with the web front up
    (as beside `tfmirror up`), so that devpi hears our answer for unknown projects."""
    client = DevpiClient(config.devpi, DEVPI_TEST_PASSWORD)
    out = {}
    with WebServer(create_app(config), config.web.host, config.web.port):
        for project in projects:
            out.update({f.filename: f.sha256 for f in client.files(project)})
    return out


def publish_family(up: Upstream) -> None:
    up.add(
        WheelSpec(
            "alpha",
            "1.0",
            requires=[
                "beta>=1.5",
                'gamma; sys_platform == "win32"',
                'delta; sys_platform == "linux"',
            ],
        )
    )
    up.add(WheelSpec("beta", "1.0"))
    up.add(WheelSpec("beta", "2.0"))
    up.add(WheelSpec("gamma", "1.0"))
    up.add(WheelSpec("delta", "1.0"))


def test_closure_per_target_installs_from_devpi_alone(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    publish_family(upstream)
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"], [LINUX, WINDOWS])

    report, store = sync(config)

    assert report.ok, report.failures
    assert report.new == 4 and report.skipped == 0
    linux = load_manifest(store, "default", LINUX_ID)
    windows = load_manifest(store, "default", WINDOWS_ID)
    assert linux is not None and windows is not None
    # Markers are evaluated for each target, not for the machine running the sync.
    assert {(w.project, w.version) for w in linux.files} == {
        ("alpha", "1.0"),
        ("beta", "2.0"),
        ("delta", "1.0"),
    }
    assert {(w.project, w.version) for w in windows.files} == {
        ("alpha", "1.0"),
        ("beta", "2.0"),
        ("gamma", "1.0"),
    }
    # Every stored byte is what upstream published.
    for wheel in linux.files + windows.files:
        data = store.open_blob(wheel.sha256).read()
        assert data == upstream.files[wheel.filename].data

    # The sync has stopped its web front: devpi now serves from what it holds.
    venv = make_venv(tmp_path / "venv")
    proc = pip_install(venv, config, "alpha")
    assert proc.returncode == 0, proc.stderr
    check = subprocess.run(
        [str(venv), "-c", "import alpha, beta, delta; print(beta.VERSION)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.strip() == "2.0"


def test_lock_file_installs_with_require_hashes(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    publish_family(upstream)
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
    report, store = sync(config)
    assert report.ok
    manifest = load_manifest(store, "default", LINUX_ID)
    assert manifest is not None
    lock = tmp_path / "requirements.lock"
    lock.write_text(render_lock(manifest, config.devpi.index_url))
    assert "--hash=sha256:" in lock.read_text()

    venv = make_venv(tmp_path / "venv")
    proc = pip_install(venv, config, "--require-hashes", "-r", str(lock))
    assert proc.returncode == 0, proc.stderr

    # The same lock with one hash changed must be refused by pip.
    beta = next(w for w in manifest.files if w.project == "beta")
    tampered = tmp_path / "tampered.lock"
    tampered.write_text(lock.read_text().replace(beta.sha256, "0" * 64))
    venv2 = make_venv(tmp_path / "venv2")
    proc = pip_install(venv2, config, "--require-hashes", "-r", str(tampered))
    assert proc.returncode != 0
    assert "HASHES" in proc.stderr.upper()


def test_bad_files_are_rejected_the_rest_goes_on_and_old_closure_keeps_serving(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0"))
    config = make_config(
        tmp_path,
        upstream.index_url,
        devpi,
        ["alpha", "flakypkg", "badpkg", "cutpkg"],
        [LINUX, WINDOWS],
    )
    # First the good closure, for Linux only (bad files arrive for Windows later).
    first = make_config(tmp_path, upstream.index_url, devpi, ["alpha"], [LINUX, WINDOWS])
    first = Config(first.storage, config.devpi, first.pypi, config.web)
    upstream.add(WheelSpec("flakypkg", "1.0"), "flaky")
    corrupt = upstream.add(WheelSpec("badpkg", "1.0"), "corrupt")
    cut = upstream.add(WheelSpec("cutpkg", "1.0", padding=400_000), "cut")
    report, store = sync(first)
    assert report.ok
    old_windows = load_manifest(store, "default", WINDOWS_ID)
    assert old_windows is not None

    report, store = sync(config)

    assert not report.ok
    reasons = {f.name: f.reason for f in report.failures}
    assert "sha256 mismatch" in reasons[corrupt.spec.filename]
    assert "connection broken" in reasons[cut.spec.filename]
    assert "not committed" in reasons[f"default/{LINUX_ID}"]
    # The flaky file (500, then 200) made it; the rest of the run went on.
    assert upstream.hits["flakypkg-1.0-py3-none-any.whl"] == 2
    assert report.new == 1
    # Nothing bad is stored, listed or offered; the previous closure stays published.
    assert not store.has_blob(corrupt.sha256) and not store.has_blob(cut.sha256)
    assert load_manifest(store, "default", WINDOWS_ID) == old_windows
    files = offered(config, "alpha", "badpkg", "cutpkg")
    assert corrupt.spec.filename not in files and cut.spec.filename not in files
    assert "alpha-1.0-py3-none-any.whl" in files
    # The run record names each failed file with its URL and reason.
    record = store.get("runs/pypi/latest.json")
    assert record is not None and b"sha256 mismatch" in record and b"badpkg" in record


def test_a_target_with_a_bad_file_does_not_hold_back_the_others(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0", requires=['badpkg; sys_platform == "win32"']))
    corrupt = upstream.add(WheelSpec("badpkg", "1.0"), "corrupt")
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"], [LINUX, WINDOWS])

    report, store = sync(config)

    assert [f.name for f in report.failures] == [corrupt.spec.filename, f"default/{WINDOWS_ID}"]
    assert load_manifest(store, "default", WINDOWS_ID) is None
    linux = load_manifest(store, "default", LINUX_ID)
    assert linux is not None and [w.project for w in linux.files] == ["alpha"]
    venv = make_venv(tmp_path / "venv")
    assert pip_install(venv, config, "alpha").returncode == 0


def test_noop_resync_moves_no_wheel_bytes(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    publish_family(upstream)
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
    first, store = sync(config)
    assert first.ok and first.new == 3 and first.devpi_warmed == 3
    hits = upstream.file_hits()
    manifest_before = store.get(f"manifests/pypi/default/{LINUX_ID}.json")

    again, _ = sync(config)

    assert again.ok
    assert (again.new, again.skipped, again.bytes, again.devpi_warmed) == (0, 3, 0, 0)
    assert upstream.file_hits() == hits
    assert store.get(f"manifests/pypi/default/{LINUX_ID}.json") == manifest_before


def test_new_upstream_version_is_picked_up(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0"))
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
    assert sync(config)[0].ok
    upstream.add(WheelSpec("alpha", "1.1"))

    report, store = sync(config)

    assert report.ok and report.new == 1 and report.devpi_warmed == 1
    manifest = load_manifest(store, "default", LINUX_ID)
    assert manifest is not None and [w.version for w in manifest.files] == ["1.1"]
    venv = make_venv(tmp_path / "venv")
    assert pip_install(venv, config, "alpha==1.1").returncode == 0
    # 1.0 left the manifest, so devpi no longer offers it.
    assert "alpha-1.0-py3-none-any.whl" not in offered(config, "alpha")
    assert pip_install(venv, config, "--force-reinstall", "alpha==1.0").returncode != 0


def test_an_unchanged_upstream_is_not_resolved_again_and_any_change_is(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_family(upstream)
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
    assert sync(config)[0].ok
    no_uv = tmp_path / "no-uv"
    no_uv.write_text("#!/bin/sh\necho 'the resolver ran' >&2\nexit 3\n")
    no_uv.chmod(0o755)
    monkeypatch.setattr(resolve, "uv_binary", lambda: str(no_uv))

    # Same requirements, same pages upstream: the closure stands without the resolver.
    again, store = sync(config)
    assert again.ok and again.new == 0, again.failures

    # A release of a project in the closure changes its page: the resolver runs.
    upstream.add(WheelSpec("beta", "2.5"))
    changed, _ = sync(config)
    assert not changed.ok and "the resolver ran" in changed.failures[0].reason
    monkeypatch.undo()
    fresh, store = sync(config)
    assert fresh.ok and fresh.new == 1
    manifest = load_manifest(store, "default", LINUX_ID)
    assert manifest is not None
    assert "beta-2.5-py3-none-any.whl" in {w.filename for w in manifest.files}

    # And once a day whatever the pages say: one outside the closure may matter.
    key = fingerprint_key("default", LINUX_ID)
    doc = json.loads(store.get(key) or b"{}")
    store.put(key, json.dumps({**doc, "at": time.time() - FULL_RESOLVE_EVERY - 60}).encode())
    monkeypatch.setattr(resolve, "uv_binary", lambda: str(no_uv))
    stale, _ = sync(config)
    assert not stale.ok and "the resolver ran" in stale.failures[0].reason


def test_a_run_whose_manifest_another_writer_committed_meanwhile_does_not_overwrite_it(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The other writer: a replica that took the lease over while this run was paused.
    upstream.add(WheelSpec("alpha", "1.0"))
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
    assert sync(config)[0].ok
    upstream.add(WheelSpec("alpha", "1.1"))
    store = open_store(config.storage)
    theirs = load_manifest(store, "default", LINUX_ID)
    assert theirs is not None
    theirs.synced_at = "written by the replica that holds the lease now"
    settle = PypiSync._settle

    def settle_then_lose_the_race(self: PypiSync, *args: object, **kwargs: object) -> None:
        settle(self, *args, **kwargs)  # type: ignore[arg-type]
        save_manifest(store, theirs)

    monkeypatch.setattr(PypiSync, "_settle", settle_then_lose_the_race)
    report = PypiSync(config, store, None).run()

    assert not report.ok and "another writer committed" in report.failures[0].reason
    kept = load_manifest(store, "default", LINUX_ID)
    assert kept is not None and kept.synced_at == theirs.synced_at


def test_no_wheel_for_a_target_is_a_clear_error(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("linuxonly", "1.0", tag="py3-none-manylinux_2_17_x86_64"))
    config = make_config(tmp_path, upstream.index_url, devpi, ["linuxonly"], [LINUX, WINDOWS])

    report, store = sync(config)

    assert [f.name for f in report.failures] == [f"default/{WINDOWS_ID}"]
    assert "linuxonly" in report.failures[0].reason
    assert "wheels with a matching platform" in report.failures[0].reason
    assert load_manifest(store, "default", LINUX_ID) is not None


def test_sync_on_s3_serves_devpi_from_the_bucket(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path, moto: object, s3_bucket: str
) -> None:
    publish_family(upstream)
    storage = {"backend": "s3", "bucket": s3_bucket, "endpoint_url": moto.url}  # type: ignore[attr-defined]
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"], storage=storage)

    report, store = sync(config)

    assert report.ok and report.new == 3
    assert not (tmp_path / "store").exists()
    manifest = load_manifest(store, "default", LINUX_ID)
    assert manifest is not None
    devpi_files = offered(config, "alpha", "beta", "delta")
    for wheel in manifest.files:
        assert devpi_files[wheel.filename] == wheel.sha256
        served = requests.get(
            f"{config.devpi.url}/{config.devpi.index}/+simple/{wheel.project}/", timeout=10
        )
        assert wheel.filename in served.text
    venv = make_venv(tmp_path / "venv")
    assert pip_install(venv, config, "alpha").returncode == 0


@pytest.mark.live
def test_live_pypi_small_closure(devpi: DevpiConfig, tmp_path: Path) -> None:
    config = make_config(tmp_path, "https://pypi.org/simple/", devpi, ["six"])

    report, store = sync(config)

    assert report.ok, report.failures
    manifest = load_manifest(store, "default", LINUX_ID)
    assert manifest is not None and [w.project for w in manifest.files] == ["six"]
    wheel = manifest.files[0]
    blob = store.open_blob(wheel.sha256).read()
    assert hashlib.sha256(blob).hexdigest() == wheel.sha256
    venv = make_venv(tmp_path / "venv")
    assert pip_install(venv, config, "six").returncode == 0


def test_files_devpi_already_holds_are_proven_again_without_waiting_for_commits(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    publish_family(upstream)
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
    first, store = sync(config)
    assert first.ok and first.devpi_warmed == 3
    store.delete(WARM_STATE)  # proof state lost (say, a restored store): devpi still holds all
    # And something new, so devpi is pushed to; beta and delta stay as they were.
    upstream.add(WheelSpec("alpha", "1.1", requires=["beta", 'delta; sys_platform == "linux"']))

    again, _ = sync(config)

    assert again.ok, again.failures
    assert again.new == 1 and again.devpi_warmed == 3  # alpha 1.1, beta, delta proven


def test_top_level_wheels_start_early_and_a_wrong_guess_is_gcs_to_remove(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    # While uv resolves, the sync starts on the newest wheel of each top-level requirement.
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("alpha", "2.0", requires=["beta>=5"]))  # no such beta: uv takes 1.0
    upstream.add(WheelSpec("beta", "1.0"))
    upstream.add(WheelSpec("omega", "1.0"))
    upstream.add(WheelSpec("omega", "2.0rc1"))  # a pre-release: neither uv nor the guess
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha", "omega"])

    report, store = sync(config)

    assert report.ok, report.failures
    assert (report.new, report.skipped) == (3, 0)
    manifest = load_manifest(store, "default", LINUX_ID)
    assert manifest is not None
    assert {(w.project, w.version) for w in manifest.files} == {
        ("alpha", "1.0"),
        ("beta", "1.0"),
        ("omega", "1.0"),
    }
    assert upstream.hits["omega-1.0-py3-none-any.whl"] == 1  # the right guess, fetched once
    # The wrong guess's blob is listed nowhere: the sync does not delete it (another
    # replica may list it by now), gc removes it, as any unlisted blob, after its grace.
    wrong = upstream.files["alpha-2.0-py3-none-any.whl"]
    assert wrong.sha256 not in {w.sha256 for w in manifest.files}
    assert (
        wrong.sha256
        in collect(store, grace_seconds=0, keeping_out=runner_over(store).keeping_out).removed
    )
    assert not store.has_blob(wrong.sha256)
    assert report.bytes == sum(w.size or 0 for w in manifest.files)
    assert upstream.hits["omega-2.0rc1-py3-none-any.whl"] == 0

    # A wrong guess is not tried again: the resync fetches nothing at all.
    hits = upstream.file_hits()
    again, _ = sync(config)
    assert again.ok and (again.new, again.bytes) == (0, 0)
    assert upstream.file_hits() == hits


def test_a_stalled_wrong_guess_does_not_hold_up_the_sync(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0"))
    upstream.add(WheelSpec("alpha", "2.0", requires=["beta>=5"]), "slow")  # answers after 5 s
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
    config = replace(config, pypi=replace(config.pypi, timeout=30))  # the guess would wait

    report, store = sync(config)

    assert report.ok, report.failures
    right = len(upstream.files["alpha-1.0-py3-none-any.whl"].data)
    wrong = upstream.files["alpha-2.0-py3-none-any.whl"]
    assert upstream.bytes_served == right  # the sync ended before the guess's answer came
    # The let-go guess still ends: its bytes arrive after the sync, and are not kept.
    deadline = time.monotonic() + 30
    while upstream.bytes_served < right + len(wrong.data) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    assert not store.has_blob(wrong.sha256)


def test_each_sync_records_the_newest_release_each_requirement_could_take(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    # Before, the newest release of all: a pinned `alpha<1.1` showed "behind" 1.1, and
    # a release no target's Python can install counted as newer.
    upstream.add(WheelSpec("alpha", "1.0"))
    upstream.add(WheelSpec("alpha", "1.1"))
    upstream.add(WheelSpec("alpha", "2.0rc1"))
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha<1.1", "omega"])
    upstream.add(WheelSpec("omega", "1.0"))
    upstream.add(WheelSpec("omega", "2.0", requires_python=">=3.99"))

    report, store = sync(config)

    assert report.ok, report.failures
    lag = read_lag(store)
    assert lag["environments"] == {"default": {"alpha<1.1": "1.0", "omega": "1.0"}}
    assert lag["newest_release"] == {"alpha": "1.1", "omega": "2.0"}
    assert lag["upstream"] == upstream.index_url
    page = create_app(config, store).test_client().get("/").get_data(as_text=True)
    assert "behind" not in page and "1.1 is outside the pin" in page

    upstream.add(WheelSpec("omega", "1.5"))  # a release the fleet could take: behind
    report, store = sync(config)
    assert read_lag(store)["environments"] == {"default": {"alpha<1.1": "1.0", "omega": "1.5"}}


def test_a_no_op_sync_asks_with_etags_and_reads_no_unchanged_page_whole(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    """Where upstream sends ETags (PyPI does), a no-op sync asks If-None-Match: each
    unchanged page is a 304, not its whole body again; a change is still seen."""
    upstream.etags = True
    publish_family(upstream)
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
    assert sync(config)[0].ok
    read_before = upstream.pages_read

    report, _ = sync(config)

    assert report.ok and report.new == 0
    # Every page a 304 but the top-level requirement's, which the speculative prefetch reads
    # whole at once to guess the wheel to fetch first.
    assert upstream.pages_read - read_before == 1
    assert upstream.not_modified >= 2  # beta and delta
    upstream.add(WheelSpec("beta", "3.0"))
    report, store = sync(config)
    assert report.ok and report.new == 1
    manifest = load_manifest(store, "default", LINUX_ID)
    assert manifest is not None and ("beta", "3.0") in {
        (w.project, w.version) for w in manifest.files
    }
