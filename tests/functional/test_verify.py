"""Proof: a rotten blob is found and repaired, a file deleted from devpi is found and
re-pushed, the air-gap proof fails clearly on a missing dependency, a model with cut
variables is flagged, and gc spares what is referenced or young."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from hub_cache.importer import import_model
from hub_cache.models import load_model
from mirror.core.config import Config, DevpiConfig, Target
from mirror.core.storage import LocalStore, blob_key, open_store
from mirror.devpi.client import DevpiClient
from mirror.pypi.interpreters import find_interpreter
from mirror.pypi.sync import PypiSync
from testkit.mirror_env import env_target, make_config
from testkit.servers import make_venv, pip_install
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.conftest import DEVPI_TEST_PASSWORD
from tests.support.archives import tar_of_dir
from tests.support.runner import runner_over
from tfmirror.app import create_app
from tfmirror.services import services_for_sync
from tfmirror.snapshotting import take_snapshot
from verify.airgap import AirGapProof
from verify.gc import collect
from verify.netns import can_unshare
from verify.run import VerifyReport, run_verify

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def synced(upstream: Upstream, devpi: DevpiConfig, tmp_path: Path) -> tuple[Config, LocalStore]:
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0", padding=50_000))
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
    store = open_store(config.storage)
    with services_for_sync(config, store) as client:
        assert PypiSync(config, store, client).run().ok
    assert isinstance(store, LocalStore)
    return config, store


def verify_now(
    config: Config, store: LocalStore, fix: bool = False, install: bool = True
) -> VerifyReport:
    """A verify run by hand, through devpi as a sync reaches it, keeping the PyPI sync out
    of a devpi repair through a runner over the same store (as the app does)."""
    keeping_out = runner_over(store, config).keeping_out
    return run_verify(config, store, services_for_sync, keeping_out, fix=fix, install=install)


def delete_from_devpi(config: Config, project: str) -> str:
    client = DevpiClient(config.devpi, DEVPI_TEST_PASSWORD)
    (entry,) = client.files(project)
    answer = requests.delete(
        f"{entry.url}?force", auth=(config.devpi.user, DEVPI_TEST_PASSWORD), timeout=30
    )
    assert answer.status_code == 200, answer.text
    return entry.filename


def test_clean_mirror_verifies_and_proves_the_install(synced: tuple[Config, LocalStore]) -> None:
    config, store = synced
    report = verify_now(config, store)
    assert report.ok, report.problems
    # Two wheels and the METADATA blob of each (the index's core-metadata).
    assert report.scrub.checked == 4 and report.devpi.clean
    (proof,) = report.targets
    assert proof.ok and "imported alpha" in proof.detail
    if can_unshare():
        assert "inside unshare -n" in proof.how
    assert b'"outcome": "ok"' in (store.get("state/verify.json") or b"")


def test_flipped_byte_is_found_and_repair_fixes_it_keeping_the_evidence(
    synced: tuple[Config, LocalStore], upstream: Upstream
) -> None:
    config, store = synced
    beta = upstream.files["beta-1.0-py3-none-any.whl"]
    path = store.root / blob_key(beta.sha256)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    found = verify_now(config, store, install=False)
    assert not found.ok
    (problem,) = found.scrub.problems
    assert problem.kind == "corrupt" and problem.names == ["beta-1.0-py3-none-any.whl"]

    fixed = verify_now(config, store, fix=True, install=False)
    assert fixed.ok, fixed.problems
    assert store.open_blob(beta.sha256).read() == beta.data
    (evidence,) = store.list("quarantine")
    assert store.get(evidence) == bytes(data)
    assert verify_now(config, store, install=False).ok


def test_missing_blob_is_refetched(synced: tuple[Config, LocalStore], upstream: Upstream) -> None:
    config, store = synced
    beta = upstream.files["beta-1.0-py3-none-any.whl"]
    store.delete_blob(beta.sha256)
    assert [p.kind for p in verify_now(config, store, install=False).scrub.problems] == ["missing"]
    assert verify_now(config, store, fix=True, install=False).ok
    assert store.has_blob(beta.sha256)


def test_a_tfjs_models_lost_or_flipped_file_is_made_again_from_its_archive(
    synced: tuple[Config, LocalStore],
) -> None:
    # Before: a shard kept on its own had no source; verify --fix said "no upstream".
    config, store = synced
    graph = ROOT / "tests" / "fixtures" / "tfjs" / "graph"
    handle = "https://tfhub.dev/google/tfjs-model/tfmirror-tiny/1"
    assert import_model(store, graph, handle, config.hub).status == "new"
    model = load_model(store, "google/tfjs-model/tfmirror-tiny/1")
    assert model is not None
    files = model.served_files()
    shard, _ = files["group1-shard2of2.bin"]
    manifest_file, _ = files["model.json"]
    store.delete_blob(shard)
    flipped = store.root / blob_key(manifest_file)
    flipped.write_bytes(flipped.read_bytes().replace(b"{", b"[", 1))

    found = verify_now(config, store, install=False).scrub.problems
    assert sorted((p.kind, p.names[0].split()[-1]) for p in found) == [
        ("corrupt", "model.json"),
        ("missing", "group1-shard2of2.bin"),
    ]
    fixed = verify_now(config, store, fix=True, install=False)
    assert all(p.repaired for p in fixed.scrub.problems), fixed.scrub.problems
    assert store.open_blob(shard).read() == (graph / "group1-shard2of2.bin").read_bytes()
    assert store.open_blob(manifest_file).read() == (graph / "model.json").read_bytes()
    assert verify_now(config, store, install=False).ok
    # With its archive gone too, the file cannot be made: named, not guessed.
    store.delete_blob(shard)
    store.delete_blob(model.sha256)
    broken = verify_now(config, store, fix=True, install=False).scrub.problems
    lost = next(p for p in broken if p.sha256 == shard)
    assert not lost.repaired and f"archive {model.sha256[:12]}" in lost.repair_error


def test_a_blob_only_a_snapshot_holds_is_scrubbed_and_repaired_and_a_broken_one_named(
    synced: tuple[Config, LocalStore], upstream: Upstream
) -> None:
    config, store = synced
    take_snapshot(store, "known-good", "ops@host")
    upstream.add(WheelSpec("alpha", "2.0", requires=["beta"]))
    with services_for_sync(config, store) as client:
        assert PypiSync(config, store, client).run().ok
    old = upstream.files["alpha-1.0-py3-none-any.whl"]
    path = store.root / blob_key(old.sha256)
    path.write_bytes(path.read_bytes()[:-1] + b"X")

    found = verify_now(config, store, install=False)
    (problem,) = found.scrub.problems
    assert problem.names == ["alpha-1.0-py3-none-any.whl (snapshot known-good)"]
    assert verify_now(config, store, fix=True, install=False).ok
    assert store.open_blob(old.sha256).read() == old.data

    store.put("snapshots/torn.json", b'{"name": "torn", "manif')
    torn = verify_now(config, store, install=False)
    assert torn.problems == ["snapshot torn: its document does not parse; nothing of it is served"]


def test_a_missing_metadata_blob_is_found_and_fetched_again_from_upstream(
    synced: tuple[Config, LocalStore], upstream: Upstream
) -> None:
    config, store = synced
    beta = upstream.files["beta-1.0-py3-none-any.whl"]
    store.delete_blob(beta.metadata_sha256)
    (problem,) = verify_now(config, store, install=False).scrub.problems
    assert problem.kind == "missing" and problem.names == ["beta-1.0-py3-none-any.whl.metadata"]
    assert verify_now(config, store, fix=True, install=False).ok
    assert store.has_blob(beta.metadata_sha256)


def test_file_deleted_from_devpi_is_found_and_pushed_again(
    synced: tuple[Config, LocalStore], tmp_path: Path
) -> None:
    config, store = synced
    name = delete_from_devpi(config, "beta")

    found = verify_now(config, store, install=False)
    assert found.devpi.missing == [name]
    assert "devpi lacks beta-1.0-py3-none-any.whl" in found.problems

    fixed = verify_now(config, store, fix=True, install=False)
    assert fixed.ok and fixed.devpi.repaired == [name]
    # devpi holds it again: pip installs with the web front down.
    venv = make_venv(tmp_path / "venv")
    pip = pip_install(venv, config.devpi.index_url, "alpha")
    assert pip.returncode == 0, pip.stderr


def test_airgap_proof_fails_clearly_when_a_dependency_is_missing(
    synced: tuple[Config, LocalStore],
) -> None:
    config, store = synced
    delete_from_devpi(config, "beta")
    proof = AirGapProof(config, store).prove(*env_target(config))
    assert not proof.ok
    assert "beta" in proof.detail
    assert "No matching distribution" in proof.detail or "not find a version" in proof.detail


def test_cli_verify_exit_codes(synced: tuple[Config, LocalStore], tmp_path: Path) -> None:
    config, store = synced
    config_file = tmp_path / "tfmirror.toml"
    config_file.write_text(
        f'[storage]\npath = "{store.root}"\n[devpi]\nurl = "{config.devpi.url}"\n'
        f'index = "{config.devpi.index}"\nserverdir = ""\n[web]\nport = {config.web.port}\n'
        f'[pypi]\nupstream = "{config.pypi.upstream}"\nrequirements = ["alpha"]\n'
        '[[pypi.targets]]\npython = "3.11"\nplatform = "manylinux_2_28_x86_64"\n'
    )
    env = {**os.environ, "TFMIRROR_DEVPI_PASSWORD": DEVPI_TEST_PASSWORD}

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "tfmirror.cli",
                "--config",
                str(config_file),
                "verify",
                "--no-install",
                *args,
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=300,
        )

    assert verify().returncode == 0
    delete_from_devpi(config, "alpha")
    broken = verify()
    assert broken.returncode == 1 and "  lacks alpha-1.0" in broken.stdout
    assert broken.stdout.count("lacks alpha-1.0") == 1, "each problem is listed once"
    repaired = verify("--repair")
    assert repaired.returncode == 0 and "re-pushed alpha-1.0" in repaired.stdout
    page = create_app(config, store).test_client().get("/").get_data(as_text=True)
    assert 'id="verification"' in page


def _cut_variables(folder: Path) -> bytes:
    """The model's archive with its variables shard cut in half, otherwise well-formed."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(tar_of_dir(folder)), mode="r:gz") as src,
        tarfile.open(fileobj=out, mode="w:gz") as dst,
    ):
        for member in src:
            data = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if data is not None and "variables.data" in member.name:
                data = data[: len(data) // 2]
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def test_deep_check_records_signatures_and_flags_cut_variables(
    saved_models: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    models, _ = saved_models
    config = make_config(
        tmp_path, "http://127.0.0.1:9/simple/", DevpiConfig(url="http://127.0.0.1:9"), ["alpha"]
    )
    store = open_store(config.storage)
    good = "https://tfhub.dev/google/tfmirror-test/keras/1"
    bad = "https://tfhub.dev/google/tfmirror-test/cut/1"
    assert import_model(store, models / "keras", good, config.hub).status == "new"
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(_cut_variables(models / "keras"))
    assert import_model(store, cut, bad, config.hub).status == "new"  # the archive is fine

    from verify.models import check_models

    checks = {c.handle: c for c in check_models(config, store, [])}

    assert checks[good].ok and "serving_default" in checks[good].detail
    assert not checks[bad].ok and "does not load" in checks[bad].detail
    manifest = load_model(store, "google/tfmirror-test/keras/1")
    assert manifest is not None
    inputs = manifest.signatures["serving_default"]["inputs"]
    assert next(iter(inputs.values()))["shape"] == [None, 4]
    assert load_model(store, "google/tfmirror-test/cut/1") is not None  # flagged, not deleted
    # No environment's runtime and no loader: said, not flagged (the host's limit).
    from verify.models import check_model

    alone = check_model(config, store, manifest, [])
    assert alone.ok and alone.detail.startswith("not loaded: no environment's runtime")
    page = create_app(config, store).test_client().get("/hub/google/tfmirror-test/keras/1")
    assert "serving_default" in page.get_data(as_text=True)


def test_gc_spares_referenced_and_young_blobs(synced: tuple[Config, LocalStore]) -> None:
    _, store = synced
    referenced = sorted(store.iter_blobs())
    young, old = store.new_blob(), store.new_blob()
    young.write(b"in-flight sync")
    old.write(b"left behind")
    import hashlib

    young_sha = hashlib.sha256(b"in-flight sync").hexdigest()
    old_sha = hashlib.sha256(b"left behind").hexdigest()
    young.publish(young_sha)
    old.publish(old_sha)
    two_days_ago = time.time() - 2 * 86400
    os.utime(store.root / blob_key(old_sha), (two_days_ago, two_days_ago))

    abandoned = store.new_blob()  # a crashed sync's unpublished write, two days old
    abandoned.write(b"half a wheel")
    (tmp_name,) = [name for name, _ in store.iter_temporaries()]
    os.utime(store.root / "tmp" / tmp_name, (two_days_ago, two_days_ago))
    in_flight = store.new_blob()  # and one being written right now
    in_flight.write(b"streaming")

    dry = collect(
        store, grace_seconds=86400, keeping_out=runner_over(store).keeping_out, dry_run=True
    )
    assert dry.removed == [old_sha] and store.has_blob(old_sha)
    assert dry.temporaries == [tmp_name] and len(list(store.iter_temporaries())) == 2

    report = collect(store, grace_seconds=86400, keeping_out=runner_over(store).keeping_out)

    assert report.removed == [old_sha] and report.kept_young == [young_sha]
    assert sorted(store.iter_blobs()) == sorted([*referenced, young_sha])
    assert report.temporaries == [tmp_name] and len(list(store.iter_temporaries())) == 1
    in_flight.discard()


def test_a_target_of_another_python_found_here_is_installed_with_it_and_others_say_why_not(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    """verify installs each target it can (a pyenv Python 3.10 here), not only the host's
    own Python; a target it cannot install says why in its proof."""
    py310 = {"python": "3.10", "platform": "manylinux_2_17_x86_64"}
    if find_interpreter(Target("3.10", "manylinux_2_17_x86_64")) is None:
        pytest.skip("no Python 3.10 here (pyenv install 3.10)")
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0"))
    mac = {"python": "3.11", "platform": "macosx_11_0_arm64"}
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"], targets=[py310, mac])
    store = open_store(config.storage)
    with services_for_sync(config, store) as client:
        assert PypiSync(config, store, client).run().ok

    report = verify_now(config, store)

    assert report.ok, report.problems
    proofs = {p.target.split("/", 1)[1]: p for p in report.targets}
    linux = proofs["py3.10-manylinux_2_17_x86_64"]
    assert "lock --require-hashes into a bare venv" in linux.how, linux
    assert "uv pip install" in linux.how and "imported alpha" in linux.detail, linux
    other = proofs["py3.11-macosx_11_0_arm64"]
    assert other.how.startswith("pip resolve")
    assert "resolved only, not installed: macosx_11_0_arm64 wheels do not run" in other.detail


def test_a_closure_lacking_a_module_its_project_imports_is_warned_at_sync_and_verify_says_the_fix(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    """tensorflow-hub imports pkg_resources (gone since setuptools 82) without declaring
    it: the sync warns with the constraint to add, and the failed import proof carries it."""
    upstream.add(WheelSpec("tensorflow-hub", "0.16.1", source="import pkg_resources\n"))
    config = make_config(tmp_path, upstream.index_url, devpi, ["tensorflow-hub"])
    store = open_store(config.storage)
    with services_for_sync(config, store) as client:
        report = PypiSync(config, store, client).run()
    assert report.ok, report.failures
    (note,) = [n for n in report.notes if "pkg_resources" in n]
    assert 'add "setuptools<82" to [pypi.environments.default] constraints' in note, note

    proof = AirGapProof(config, store).prove(*env_target(config))

    assert not proof.ok
    assert "No module named 'pkg_resources'" in proof.detail
    assert 'fix: add "setuptools<82" to [pypi.environments.default] constraints' in proof.detail
