"""Shared state under concurrency: two writers at once lose nothing and revert nothing.

Each test stages the race the way it happens in the field (two processes, a job that
runs while another commits) and fails on the code before its fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from hub_cache.importer import import_model
from hub_cache.models import load_model
from hub_cache.prefetch import swap_in
from mirror.core.config import DevpiConfig, load_config, parse_config
from mirror.core.storage import LocalStore, blob_key, open_store
from mirror.devpi.client import DevpiClient
from mirror.devpi.errors import DevpiError
from mirror.devpi.server import DevpiProcess
from mirror.pypi.manifest import load_manifest, manifest_key
from mirror.pypi.sync import PypiSync
from testkit.mirror_env import env_target, make_config
from testkit.servers import MotoServer, free_port
from testkit.upstream import PEP691, Upstream
from testkit.wheels import WheelSpec
from tests.conftest import DEVPI_TEST_PASSWORD
from tests.support.archives import tar_of_dir
from tests.support.runner import runner_over
from tfmirror.services import services_for_sync
from verify.airgap import AirGapProof
from verify.gc import collect, referenced_shas
from verify.models import Loader, check_model
from verify.netns import can_unshare


def test_devpi_bootstrapped_from_two_places_at_once_never_fails(devpi: DevpiConfig) -> None:
    # `tfmirror devpi` and a sync both bootstrap the index as soon as devpi answers.
    errors: list[Exception] = []
    for _ in range(8):
        config = DevpiConfig(url=devpi.url, index=f"r{uuid.uuid4().hex[:8]}/mirror")
        clients = [DevpiClient(config, DEVPI_TEST_PASSWORD) for _ in range(4)]
        start = threading.Barrier(len(clients))

        def boot(client: DevpiClient, start: threading.Barrier) -> None:
            start.wait()
            try:
                client.bootstrap("http://127.0.0.1:9/simple/")
            except DevpiError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=boot, args=(c, start)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []


def test_devpi_pulling_a_file_a_node_asks_for_at_the_same_moment_still_proves_it(
    devpi: DevpiConfig, upstream: Upstream
) -> None:
    # After a sync commits, verify's installs through nginx reach devpi while the sync's
    # own pulls run: two first requests for one file at once. When the second one's
    # upstream answer comes after the first one stored the file, devpi answers it 500
    # (its filestore asserts the file is new); the sync's pull must not fail for that.
    hosted = [upstream.add(WheelSpec(f"racer{i}", "1.0"), "lagging") for i in range(2)]
    config = DevpiConfig(url=devpi.url, index=f"r{uuid.uuid4().hex[:8]}/mirror")
    client = DevpiClient(config, DEVPI_TEST_PASSWORD)
    client.bootstrap(upstream.index_url)
    served: list[str] = []
    for wheel in hosted:
        client.refresh(wheel.spec.name)
        (file,) = client.files(wheel.spec.name)
        start = threading.Barrier(2)

        def pull(url: str, start: threading.Barrier) -> None:
            start.wait()
            try:
                served.append(DevpiClient(config, DEVPI_TEST_PASSWORD).fetch_sha256(url))
            except DevpiError as exc:
                served.append(str(exc))

        threads = [threading.Thread(target=pull, args=(file.url, start)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert served == [wheel.sha256 for wheel in hosted for _ in range(2)]


def test_a_model_swapped_in_by_prefetch_is_never_missing_for_a_reader(tmp_path: Path) -> None:
    # tensorflow_hub counts a non-empty cache folder as downloaded; an empty or missing
    # one makes it download, which on an air-gapped node fails.
    folder = tmp_path / "cache" / "0123abcd"
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"v0")
    empty_seen = 0
    done = threading.Event()

    def reader() -> None:
        nonlocal empty_seen
        while not done.is_set():
            try:
                empty_seen += not os.listdir(folder)
            except FileNotFoundError:
                empty_seen += 1

    watcher = threading.Thread(target=reader)
    watcher.start()
    try:
        for i in range(300):
            staging = tmp_path / "cache" / f"staging-{i}"
            staging.mkdir()
            (staging / "saved_model.pb").write_bytes(f"v{i + 1}".encode())
            swap_in(staging, folder)
    finally:
        done.set()
        watcher.join()
    assert empty_seen == 0
    assert (folder / "saved_model.pb").read_bytes() == b"v300"


def test_a_deep_verify_never_reverts_a_model_a_sync_published_meanwhile(
    saved_models: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    models, _ = saved_models
    config = parse_config({"storage": {"path": "store"}}, tmp_path)
    store = open_store(config.storage)
    handle = "https://tfhub.dev/google/tfmirror-test/race/1"
    path = "google/tfmirror-test/race/1"
    assert import_model(store, models / "keras", handle, config.hub).status == "new"
    newer = tmp_path / "newer.tar.gz"
    newer.write_bytes(tar_of_dir(models / "lookup"))
    before = load_model(store, path)
    assert before is not None

    def sync_meanwhile() -> None:
        time.sleep(1)  # TensorFlow is still loading the old archive in its subprocess
        assert import_model(store, newer, handle, config.hub).status == "new"

    syncing = threading.Thread(target=sync_meanwhile)
    syncing.start()
    check = check_model(config, store, before, [Loader("this Python", Path(sys.executable))])
    syncing.join()

    assert check.ok, check.detail
    after = load_model(store, path)
    assert after is not None
    assert after.sha256 == hashlib.sha256(newer.read_bytes()).hexdigest(), "reverted"
    assert after.sha256 in referenced_shas(store)  # so gc keeps the new archive


class GcRightAfterAsking(LocalStore):
    """A store where gc runs the moment a sync has asked about one blob: the worst time."""

    def __init__(self, root: Path, sha256: str) -> None:
        super().__init__(root)
        self.trigger = sha256

    def has_blob(self, sha256: str) -> bool:
        found = super().has_blob(sha256)
        if sha256 == self.trigger:
            collect(self, grace_seconds=24 * 3600, keeping_out=runner_over(self).keeping_out)
        return found

    def touch_blob(self, sha256: str) -> bool:
        touched = super().touch_blob(sha256)
        if sha256 == self.trigger:
            collect(self, grace_seconds=24 * 3600, keeping_out=runner_over(self).keeping_out)
        return touched


def test_gc_between_a_syncs_reuse_of_a_blob_and_its_commit_loses_nothing(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0"))
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
    assert PypiSync(config, open_store(config.storage), None).run().ok
    # The target's manifest goes (a target dropped, then added back): its blobs are
    # unreferenced and older than gc's grace period, but still in the store.
    store = GcRightAfterAsking(
        config.storage.path, upstream.files["beta-1.0-py3-none-any.whl"].sha256
    )
    (target,) = config.pypi.targets
    store.delete(manifest_key("default", target.id))
    two_days_ago = time.time() - 2 * 86400
    for sha in store.iter_blobs():
        os.utime(store.root / blob_key(sha), (two_days_ago, two_days_ago))

    assert PypiSync(config, store, None).run().ok

    manifest = load_manifest(store, "default", target.id)
    assert manifest is not None and len(manifest.files) == 2
    missing = [w.filename for w in manifest.files if not store.has_blob(w.sha256)]
    assert missing == [], "the committed manifest lists blobs gc removed"


def test_gc_deletes_nothing_while_a_writer_holds_its_lease(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    # Before, gc went by each blob's stamp alone: a sync that re-stamped and listed a blob
    # between gc's look at its stamp and the delete lost it. A writer running (another
    # replica's sync, an import) now puts gc's deletes off to the next gc.
    upstream.add(WheelSpec("alpha", "1.0"))
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
    store = open_store(config.storage)
    assert PypiSync(config, store, None).run().ok
    (target,) = config.pypi.targets
    store.delete(manifest_key("default", target.id))  # alpha's wheel: unreferenced, old
    sha = upstream.files["alpha-1.0-py3-none-any.whl"].sha256
    two_days_ago = time.time() - 2 * 86400
    assert isinstance(store, LocalStore)
    for old in store.iter_blobs():
        os.utime(store.root / blob_key(old), (two_days_ago, two_days_ago))

    lease = store.leader_lock(60).acquire("pypi")  # a sync, running in another process
    assert lease is not None
    report = collect(store, grace_seconds=86400, keeping_out=runner_over(store).keeping_out)
    assert report.removed == [] and store.has_blob(sha)
    assert "pypi is running elsewhere" in report.summary()
    lease.release()

    report = collect(store, grace_seconds=86400, keeping_out=runner_over(store).keeping_out)
    assert sha in report.removed
    assert not store.has_blob(sha)


@pytest.mark.skipif(not can_unshare(), reason="needs unshare -n (root)")
def test_the_air_gap_proof_reaches_a_devpi_configured_on_another_address(
    upstream: Upstream, tmp_path: Path
) -> None:
    # devpi on 127.0.0.2: inside the proof's namespace only the bridge on 127.0.0.1
    # answers, so pip must be pointed there, not at the configured address.
    upstream.add(WheelSpec("alpha", "1.0"))
    other = DevpiConfig(url=f"http://127.0.0.2:{free_port()}", serverdir=tmp_path / "devpi")
    with DevpiProcess(other, log=tmp_path / "devpi.log"):
        config = make_config(tmp_path, upstream.index_url, other, ["alpha"], managed_devpi=True)
        store = open_store(config.storage)
        with services_for_sync(config, store) as client:
            assert PypiSync(config, store, client).run().ok
        proof = AirGapProof(config, store, isolate=True).prove(*env_target(config))
    assert proof.ok, proof.detail
    assert "inside unshare -n" in proof.how and "imported alpha" in proof.detail


def test_a_model_sync_that_another_writer_overtook_does_not_overwrite_its_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Between reading the served version and committing the new one, a replica that
    # took the hub lease over (this one was paused) commits a model of its own.
    from hub_cache import hub_sync
    from tests.support.archives import FAKE_MODEL, tar_bytes

    config = parse_config({"storage": {"path": str(tmp_path / "store")}}, tmp_path)
    store = open_store(config.storage)
    handle, path = "https://tfhub.dev/google/race/1", "google/race/1"
    first, second, theirs = (tmp_path / f"{n}.tar" for n in ("first", "second", "theirs"))
    first.write_bytes(tar_bytes(FAKE_MODEL))
    second.write_bytes(tar_bytes({**FAKE_MODEL, "variables/extra": b"second"}))
    theirs.write_bytes(tar_bytes({**FAKE_MODEL, "variables/extra": b"theirs"}))
    assert import_model(store, first, handle, config.hub).status == "new"
    inspect = hub_sync.inspect_archive
    overtaken: list[str] = []

    def inspect_while_overtaken(*args: Any, **kwargs: Any) -> Any:
        facts = inspect(*args, **kwargs)
        if not overtaken:
            overtaken.append("once")
            assert import_model(store, theirs, handle, config.hub).status == "new"
        return facts

    monkeypatch.setattr(hub_sync, "inspect_archive", inspect_while_overtaken)
    outcome = import_model(store, second, handle, config.hub)

    assert outcome.status == "failed" and "another writer" in outcome.reason
    kept = load_model(store, path)
    assert kept is not None and kept.sha256 == hashlib.sha256(theirs.read_bytes()).hexdigest()


class HeldPage:
    """A project page as two replicas see it across a release: while `holding`, a request
    waits (a slow upstream) and then finds no such project; while `published`, the
    project is there."""

    def __init__(self, upstream: Upstream, project: str) -> None:
        self.upstream, self.project = upstream, project
        self.published = False
        self.asked = threading.Event()
        self.release = threading.Event()
        upstream.pages[project] = self.answer

    def answer(self, req: Any) -> None:
        if not self.published:
            self.asked.set()
            self.release.wait(60)
        doc = self.upstream._project_doc(self.project) if self.published else None
        body = json.dumps(doc).encode() if doc else b"not found"
        req.send_response(200 if doc else 404)
        req.send_header("Content-Type", PEP691 if doc else "text/plain")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)


def test_a_replica_paused_past_its_lease_deletes_no_blob_and_rewrites_no_shared_state(
    upstream: Upstream, moto: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    # Replica A guesses alpha 2.0 and stores it while its resolver waits for gamma's page
    # (alpha 2.0 needs gamma, not published yet); A is paused past its lease. gamma comes
    # out; replica B takes the lease over and commits alpha 2.0, reusing the blob A
    # stored. A wakes to an upstream without gamma, resolves alpha 1.0 and ends its run.
    upstream.add(WheelSpec("alpha", "1.0"))
    upstream.add(WheelSpec("alpha", "2.0", requires=["gamma"]))
    gamma_page = HeldPage(upstream, "gamma")
    config = tmp_path / "tfmirror.toml"
    config.write_text(f"""
[storage]
backend = "s3"
bucket = "{s3_bucket}"
endpoint_url = "{moto.url}"

[schedule]
lease_seconds = 5

[devpi]
url = "http://127.0.0.1:{free_port()}"

[pypi]
upstream = "{upstream.index_url}"
requirements = ["alpha"]
timeout = 30
retries = 0
build_backends = []

[[pypi.targets]]
python = "3.11"
platform = "manylinux_2_28_x86_64"
""")
    store = open_store(load_config(str(config)).storage)
    alpha2 = upstream.files["alpha-2.0-py3-none-any.whl"].sha256
    sync = [sys.executable, "-m", "tfmirror.cli", "--config", str(config), "sync", "pypi"]
    replica_a = subprocess.Popen(
        [*sync, "--no-devpi"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert gamma_page.asked.wait(60), "replica A never asked for gamma's page"
        deadline = time.monotonic() + 30
        while not store.has_blob(alpha2):
            assert time.monotonic() < deadline, "replica A's prefetch never stored alpha 2.0"
            time.sleep(0.05)
        replica_a.send_signal(signal.SIGSTOP)
        gamma_page.published = True
        upstream.add(WheelSpec("gamma", "1.0"))
        replica_b = subprocess.run(
            [*sync, "--no-devpi", "--wait"], capture_output=True, text=True, timeout=120
        )
        assert replica_b.returncode == 0, replica_b.stdout + replica_b.stderr
        shared = ("runs/pypi/latest.json", "runs/pypi/recent.json", "runs/pypi/totals.json")
        shared += ("state/lag.json",)
        after_b = {key: store.get(key) for key in shared}
        gamma_page.published = False  # A's view of upstream: gamma is not out
        gamma_page.release.set()
        replica_a.send_signal(signal.SIGCONT)
        out, _ = replica_a.communicate(timeout=120)
    finally:
        gamma_page.release.set()
        replica_a.send_signal(signal.SIGCONT)
        replica_a.kill()
        replica_a.wait()

    (target,) = load_config(str(config)).pypi.targets
    manifest = load_manifest(store, "default", target.id)
    assert manifest is not None
    assert alpha2 in {w.sha256 for w in manifest.files}, "B's commit was undone"
    missing = [w.filename for w in manifest.files if not store.has_blob(w.sha256)]
    assert missing == [], f"a blob the committed manifest lists is gone: {missing}\n{out}"
    changed = [key for key in shared if store.get(key) != after_b[key]]
    assert changed == [], f"the replica that lost its lease rewrote {changed}\n{out}"
    assert replica_a.returncode != 0 and "lease" in out


def test_an_archive_a_sync_rejects_keeps_the_blob_a_snapshot_holds(tmp_path: Path) -> None:
    # A model served under roomier caps is held by a snapshot; the caps are tightened and
    # the same bytes arrive again for another handle. Before, the rejection deleted the
    # blob (no current model listed it), unfenced: the snapshot's model was gone.
    from mirror.core.snapshots import Snapshot, save_snapshot
    from tests.support.archives import FAKE_MODEL, tar_bytes

    roomy = parse_config({"storage": {"path": "store"}}, tmp_path)
    tight = parse_config(
        {"storage": {"path": "store"}, "hub": {"max_uncompressed_mb": 1}}, tmp_path
    )
    store = open_store(roomy.storage)
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(tar_bytes({**FAKE_MODEL, "variables/zeros": bytes(4_000_000)}))
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    handle, other = "https://tfhub.dev/google/held/1", "https://tfhub.dev/google/again/1"
    assert import_model(store, archive, handle, roomy.hub).status == "new"
    path = "google/held/1"
    held = Snapshot("before", "2026-12-01T00:00:00Z", "test", {}, [sha])
    assert save_snapshot(store, held)
    store.delete(f"manifests/hub/{path}.json")  # the model left the config since

    outcome = import_model(store, archive, other, tight.hub)

    assert outcome.status == "failed" and "rejected" in outcome.reason
    assert store.has_blob(sha), "a blob a snapshot holds was deleted"
