"""Signed, incremental bundles from an outer mirror to an inner one, through the CLI:
real devpi on both sides, pip on the inner side, every refusal with its reason."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bundle.contents import read_manifests, referenced
from bundle.importer import committing, pending
from mirror.core.config import load_config
from mirror.core.errors import BlobNotFound
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from mirror.devpi.server import DevpiProcess
from mirror.proxy.nginx import entry_point
from testkit.mirror_env import operator_config
from testkit.servers import make_venv, pip_install, port_free
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.support.archives import tar_of_dir
from tests.support.hub_upstream import HubUpstream
from tests.support.runner import runner_over
from tfmirror.app import create_app
from verify.jobs import run_gc
from verify.netns import can_unshare

NO_PROXY = "\n[proxy]\nenabled = false\n"
ROOT = Path(__file__).resolve().parents[2]


def tfmirror(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tfmirror.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def manifests(config: Path) -> dict[str, bytes]:
    store = open_store(load_config(str(config)).storage)
    return {k: store.get(k) or b"" for k in store.list("manifests/")}


@pytest.fixture
def sides(tmp_path: Path, upstream: Upstream) -> tuple[Path, Path, Path]:
    """An outer mirror that synced alpha 1.0 (+ beta), an empty inner one, a key pair."""
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0", noise=200_000))
    (tmp_path / "outer").mkdir()
    (tmp_path / "inner").mkdir()
    outer = operator_config(tmp_path / "outer", upstream.index_url, ["alpha"])
    # The inner mirror names no upstream at all: bundles are all it gets.
    inner = operator_config(tmp_path / "inner", "", ["alpha"], extra=NO_PROXY)
    assert tfmirror(outer, "sync", "pypi").returncode == 0
    made = tfmirror(outer, "bundle", "keygen", "--out", str(tmp_path / "keys"))
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "keys" / "bundle.key").stat().st_mode & 0o077 == 0
    return outer, inner, tmp_path / "keys"


def export(outer: Path, out: Path, key: Path, *args: str) -> str:
    done = tfmirror(
        outer, "bundle", "export", "--key", str(key / "bundle.key"), "-o", str(out), *args
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split("\t")[0]


def blob_items(bundle: Path) -> list[dict[str, object]]:
    index = json.loads((bundle / "bundle.json").read_text())
    return [i for i in index["items"] if i["kind"] == "blob"]


def test_full_then_incremental_bundles_bring_the_closure_and_pip_installs_inside(
    sides: tuple[Path, Path, Path], upstream: Upstream, tmp_path: Path
) -> None:
    outer, inner, keys = sides
    first = export(outer, tmp_path / "b1", keys, "--full", "--max-part-size", "1M")
    assert len(list((tmp_path / "b1").glob("part-*"))) >= 1
    upstream.add(WheelSpec("alpha", "2.0", requires=["beta"]))
    assert tfmirror(outer, "sync", "pypi").returncode == 0
    second = export(outer, tmp_path / "b2", keys)
    # Only what came since: alpha 2.0's wheel and its METADATA, not beta's 200 KB again.
    new = upstream.files["alpha-2.0-py3-none-any.whl"]
    assert {i["sha256"] for i in blob_items(tmp_path / "b2")} == {new.sha256, new.metadata_sha256}
    assert json.loads((tmp_path / "b2" / "bundle.json").read_text())["follows"] == first

    trust = str(keys / "bundle.pub")
    for bundle in ("b1", "b2"):
        done = tfmirror(inner, "bundle", "import", str(tmp_path / bundle), "--trust", trust)
        assert done.returncode == 0, done.stderr
    assert f"imported {second}" in done.stdout
    assert manifests(inner) == manifests(outer)
    # With no upstream, a sync there has nothing to do and changes nothing.
    idle = tfmirror(inner, "sync", "all")
    assert idle.returncode == 0 and "pypi: no upstream" in idle.stdout, idle.stderr
    assert manifests(inner) == manifests(outer)

    config = load_config(str(inner))
    venv = make_venv(tmp_path / "venv")
    front = WebServer(create_app(config), config.web.host, config.web.port)
    with front, DevpiProcess(config.devpi):
        pip = pip_install(venv, entry_point(config, proxied=False).index_url, "alpha")
    assert pip.returncode == 0, pip.stderr
    version = subprocess.run(
        [str(venv), "-c", "import alpha; print(alpha.VERSION)"], capture_output=True, text=True
    )
    assert version.stdout.strip() == "2.0"


def refused(inner: Path, bundle: Path, pub: Path) -> str:
    before = manifests(inner)
    done = tfmirror(inner, "bundle", "import", str(bundle), "--trust", str(pub))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert manifests(inner) == before  # nothing served changed
    return done.stderr


def test_each_bad_bundle_is_refused_with_its_reason_and_changes_nothing(
    sides: tuple[Path, Path, Path], upstream: Upstream, tmp_path: Path
) -> None:
    outer, inner, keys = sides
    pub = keys / "bundle.pub"
    export(outer, tmp_path / "full", keys, "--full", "--max-part-size", "1M")
    upstream.add(WheelSpec("alpha", "2.0", requires=["beta"]))
    assert tfmirror(outer, "sync", "pypi").returncode == 0
    export(outer, tmp_path / "next", keys)

    # Out of order: the incremental one before the full one it follows.
    assert "import the bundles in order" in refused(inner, tmp_path / "next", pub)
    # Another key.
    assert tfmirror(outer, "bundle", "keygen", "--out", str(tmp_path / "other")).returncode == 0
    assert "does not verify with the trusted key" in refused(
        inner, tmp_path / "full", tmp_path / "other" / "bundle.pub"
    )
    # An index altered after signing.
    altered = tmp_path / "altered"
    subprocess.run(["cp", "-r", str(tmp_path / "full"), str(altered)], check=True)
    text = (altered / "bundle.json").read_text()
    (altered / "bundle.json").write_text(text.replace('"follows": null', '"follows": "x"'))
    assert "does not verify with the trusted key" in refused(inner, altered, pub)
    # A flipped byte in a part.
    flipped = tmp_path / "flipped"
    subprocess.run(["cp", "-r", str(tmp_path / "full"), str(flipped)], check=True)
    part = sorted(flipped.glob("part-*"))[-1]
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    reason = refused(inner, flipped, pub)
    assert "arrived as other bytes" in reason or "does not hash" in reason, reason
    # A missing part.
    missing = tmp_path / "missing"
    subprocess.run(["cp", "-r", str(tmp_path / "full"), str(missing)], check=True)
    sorted(missing.glob("part-*"))[0].unlink()
    assert "is missing" in refused(inner, missing, pub)
    # The inner side's status says the last bundle was refused, and why.
    status = tfmirror(inner, "status")
    assert status.returncode == 1 and "FAILING: bundle" in status.stdout
    assert "error: missing: " in status.stdout and "is missing" in status.stdout

    # The good ones, in order, still import, and the status page shows the last one.
    for bundle in ("full", "next"):
        ok = tfmirror(inner, "bundle", "import", str(tmp_path / bundle), "--trust", str(pub))
        assert ok.returncode == 0, ok.stderr
    assert manifests(inner) == manifests(outer)
    again = tfmirror(inner, "bundle", "import", str(tmp_path / "next"), "--trust", str(pub))
    assert again.returncode == 0 and "nothing new to check" in again.stdout
    status = tfmirror(inner, "status")
    # No job fails; nothing has verified the inner store yet: its health is unknown.
    assert "FAILING" not in status.stdout, status.stdout
    assert status.returncode == 1 and "UNKNOWN: verify has never finished" in status.stdout
    runs = open_store(load_config(str(inner)).storage)
    latest = json.loads(runs.get("runs/bundle/latest.json") or b"{}")
    assert latest["outcome"] == "ok" and latest["action"] == "import"
    sent = json.loads((tmp_path / "next" / "bundle.json").read_text())["id"]
    assert latest["bundle"] == sent


def test_bad_key_and_part_size_are_usage_errors(
    sides: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    outer, _, keys = sides
    again = tfmirror(outer, "bundle", "keygen", "--out", str(keys))
    assert again.returncode == 2 and "never overwrites a key" in again.stderr
    not_a_key = tfmirror(
        outer, "bundle", "export", "--key", str(keys / "bundle.pub"), "-o", str(tmp_path / "x")
    )
    assert not_a_key.returncode == 2 and "not a readable ed25519 private key" in not_a_key.stderr
    tiny = tfmirror(
        outer,
        "bundle",
        "export",
        "--key",
        str(keys / "bundle.key"),
        "-o",
        str(tmp_path / "y"),
        "--max-part-size",
        "10K",
    )
    assert tiny.returncode == 2 and "under 1M" in tiny.stderr


TFHUB_KERAS = "https://tfhub.dev/google/tfmirror-test/keras/1"


@pytest.mark.skipif(not can_unshare(), reason="needs root and util-linux for unshare -n")
def test_an_air_gapped_inner_mirror_imports_then_pip_and_hub_load_work_inside(
    upstream: Upstream, saved_models: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """Outer: PyPI and a real SavedModel from local upstreams. Inner: a namespace with
    loopback only, where the bundles are all that arrives."""
    models_dir, expected = saved_models
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0"))
    with HubUpstream() as hub_up:
        hub_up.add("google/tfmirror-test/keras/1", tar_of_dir(models_dir / "keras"))
        source = f"{hub_up.url}/google/tfmirror-test/keras/1?tf-hub-format=compressed"
        hub = f'\n[hub]\nmodels = [{{handle = "{TFHUB_KERAS}", source = "{source}"}}]\n'
        (tmp_path / "outer").mkdir()
        outer = operator_config(tmp_path / "outer", upstream.index_url, ["alpha"], extra=hub)
        synced = tfmirror(outer, "sync", "all")
        assert synced.returncode == 0, synced.stderr
    keys = tmp_path / "keys"
    assert tfmirror(outer, "bundle", "keygen", "--out", str(keys)).returncode == 0
    export(outer, tmp_path / "b1", keys, "--full")
    upstream.add(WheelSpec("alpha", "2.0", requires=["beta"]))
    assert tfmirror(outer, "sync", "pypi").returncode == 0
    second = export(outer, tmp_path / "b2", keys)

    (tmp_path / "inner").mkdir()
    inner = operator_config(tmp_path / "inner", "", ["alpha"], extra=NO_PROXY)
    venv = make_venv(tmp_path / "venv")
    driver = [
        *("unshare", "-n", sys.executable, "-m", "tests.support.inner_side"),
        *(str(inner), str(keys / "bundle.pub"), str(venv), upstream.index_url),
        *("google/tfmirror-test/keras/1", str(tmp_path / "b1"), str(tmp_path / "b2")),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(driver, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    steps = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 0 and steps, run.stderr[-3000:]
    by_step = {s["step"]: s for s in steps}
    assert by_step["outer upstream reachable"]["value"] is False  # truly air-gapped
    imports = [s for s in steps if s["step"] == "import"]
    assert [s["rc"] for s in imports] == [0, 0], imports
    assert f"imported {second}" in imports[1]["out"]
    assert by_step["pip"]["rc"] == 0, by_step["pip"]["err"]
    assert by_step["version"]["value"] == "2.0"
    load = by_step["hub.load"]
    assert load["rc"] == 0, load["err"]
    got = json.loads(load["outputs"])
    for name, value in expected["keras"].items():
        np.testing.assert_allclose(np.array(got[name]), np.array(value), rtol=1e-6)
    bundle_job = by_step["status"]["bundle"]
    assert bundle_job["last_run"]["outcome"] == "ok" and bundle_job["last_run"]["bundle"] == second
    assert manifests(inner) == manifests(outer)


def referenced_blobs_whole(config: Path) -> bool:
    store = open_store(load_config(str(config)).storage)
    for sha in referenced(read_manifests(store)):
        digest = hashlib.sha256()
        try:
            with store.open_blob(sha) as blob:
                while chunk := blob.read(1 << 20):
                    digest.update(chunk)
        except BlobNotFound:
            return False
        if digest.hexdigest() != sha:
            return False
    return True


def test_kill_9_mid_import_leaves_the_inner_mirror_serving_what_it_served(
    sides: tuple[Path, Path, Path], upstream: Upstream, tmp_path: Path
) -> None:
    """Killed while copying a 40 MB wheel (3 times, as a temporary blob appears) and at
    random points of a whole import (5 times): each time the manifests are the old set
    or the new one, never a mix, and every blob they refer to is whole. Then the import
    completes and pip installs the new release."""
    outer, inner, keys = sides
    pub = str(keys / "bundle.pub")
    export(outer, tmp_path / "b1", keys, "--full")
    assert tfmirror(inner, "bundle", "import", str(tmp_path / "b1"), "--trust", pub).returncode == 0
    old = manifests(inner)
    upstream.add(WheelSpec("alpha", "2.0", requires=["beta"], noise=40_000_000))
    assert tfmirror(outer, "sync", "pypi").returncode == 0
    export(outer, tmp_path / "b2", keys, "--max-part-size", "8M")
    new = manifests(outer)
    command = [sys.executable, "-m", "tfmirror.cli", "--config", str(inner), "bundle", "import"]
    command += [str(tmp_path / "b2"), "--trust", pub]

    # How long a whole import takes, measured on a copy of the inner side.
    probe = tmp_path / "probe"
    shutil.copytree(inner.parent, probe, symlinks=True)
    began = time.monotonic()
    whole = subprocess.run(
        [*command[:4], str(probe / inner.name), *command[5:]], capture_output=True, timeout=300
    )
    took = time.monotonic() - began
    assert whole.returncode == 0, whole.stderr
    shutil.rmtree(probe)

    store = open_store(load_config(str(inner)).storage)
    rng = random.Random(13)
    running_when_killed = 0
    for round_ in range(8):
        free = load_config(str(inner)).devpi.url.rsplit(":", 1)[1]
        wait_port_free(int(free))
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if round_ < 3:
            deadline = time.monotonic() + 60
            while not list(store.iter_temporaries()) and time.monotonic() < deadline:
                time.sleep(0.005)
        else:
            time.sleep(rng.uniform(0.05, 0.95) * took)
        running_when_killed += proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = manifests(inner)
        if not committing(store):  # else: committing, finished by the next run
            assert now in (old, new), f"round {round_}: a mix of two bundles is served"
        assert referenced_blobs_whole(inner), f"round {round_}: a referenced blob is not whole"
        if round_ < 3:
            assert now == old, f"round {round_}: killed mid-copy yet the manifests changed"
    assert running_when_killed >= 6, f"only {running_when_killed} of 8 kills hit an import"

    wait_port_free(int(load_config(str(inner)).devpi.url.rsplit(":", 1)[1]))
    final = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert manifests(inner) == new and not pending(store)
    config = load_config(str(inner))
    venv = make_venv(tmp_path / "venv")
    with (
        WebServer(create_app(config), config.web.host, config.web.port),
        DevpiProcess(config.devpi),
    ):
        pip = pip_install(venv, entry_point(config, proxied=False).index_url, "alpha==2.0")
    assert pip.returncode == 0, pip.stderr


def wait_port_free(port: int, seconds: float = 15) -> None:
    """A killed import's devpi dies with it, a moment later."""
    deadline = time.monotonic() + seconds
    while not port_free(port) and time.monotonic() < deadline:
        time.sleep(0.1)


def test_the_outer_journal_travels_and_the_inner_side_verifies_it(
    sides: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    outer, inner, keys = sides
    pub = str(keys / "bundle.pub")
    export(outer, tmp_path / "b1", keys, "--full")
    assert tfmirror(inner, "bundle", "import", str(tmp_path / "b1"), "--trust", pub).returncode == 0

    verified = tfmirror(inner, "history", "--outer", "--verify")
    assert verified.returncode == 0 and "1 entries, every link matches" in verified.stdout
    shown = tfmirror(inner, "history", "--outer", "--project", "alpha")
    assert "file added: alpha 1.0" in shown.stdout
    own = tfmirror(inner, "history", "--json")
    (entry,) = json.loads(own.stdout)  # the inner side's own: the import
    assert entry["changes"][0]["event"] == "bundle imported"

    # The outer journal edited after the fact: the signed bundle carries it as it is,
    # and the inner side finds the break.
    outer_store = open_store(load_config(str(outer)).storage)
    first = "journal/entries/000000000000.json"
    raw = outer_store.get(first)
    assert raw is not None
    tfmirror(outer, "quarantine", "add", "beta", "--reason", "second entry")
    outer_store.put(first, raw.replace(b"alpha", b"alphb"))
    export(outer, tmp_path / "b2", keys)
    assert tfmirror(inner, "bundle", "import", str(tmp_path / "b2"), "--trust", pub).returncode == 0
    broken = tfmirror(inner, "history", "--outer", "--verify")
    assert broken.returncode == 1 and "BROKEN at journal entry 1" in broken.stdout


def test_an_outer_journal_cut_short_or_rewritten_since_the_last_import_is_named(
    sides: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Entries the outer side removed (its head rewritten too, so its own verify
    passes): each bundle is signed and whole, but the inner side held more."""
    outer, inner, keys = sides
    pub = str(keys / "bundle.pub")
    assert tfmirror(outer, "quarantine", "add", "beta", "--reason", "second").returncode == 0
    export(outer, tmp_path / "b1", keys, "--full")
    assert tfmirror(inner, "bundle", "import", str(tmp_path / "b1"), "--trust", pub).returncode == 0
    held = tfmirror(inner, "history", "--outer", "--verify")
    assert held.returncode == 0 and "2 entries, every link matches" in held.stdout

    outer_store = open_store(load_config(str(outer)).storage)
    first = outer_store.get("journal/entries/000000000000.json")
    assert first is not None
    outer_store.delete("journal/entries/000000000001.json")
    head = {"seq": 0, "sha256": hashlib.sha256(first).hexdigest()}
    outer_store.put("journal/head.json", json.dumps(head).encode())
    assert tfmirror(outer, "history", "--verify").returncode == 0  # nothing left to see
    export(outer, tmp_path / "b2", keys)
    done = tfmirror(inner, "bundle", "import", str(tmp_path / "b2"), "--trust", pub)
    assert done.returncode == 0 and "lacks entries an earlier bundle carried" in done.stderr
    cut = tfmirror(inner, "history", "--outer", "--verify")
    assert cut.returncode == 1, cut.stdout
    assert "BROKEN at journal entry 1: is missing" in cut.stdout

    # Another entry 1 written in its place: a chain that holds, but not the one held.
    assert tfmirror(outer, "quarantine", "add", "alpha", "--reason", "other").returncode == 0
    export(outer, tmp_path / "b3", keys)
    assert tfmirror(inner, "bundle", "import", str(tmp_path / "b3"), "--trust", pub).returncode == 0
    rewritten = tfmirror(inner, "history", "--outer", "--verify")
    assert rewritten.returncode == 1, rewritten.stdout
    assert "BROKEN at journal entry 1: differs from" in rewritten.stdout


def test_snapshots_travel_once_with_their_blobs_and_the_inner_side_serves_them(
    sides: tuple[Path, Path, Path], upstream: Upstream, tmp_path: Path
) -> None:
    outer, inner, keys = sides
    pub = str(keys / "bundle.pub")
    assert tfmirror(outer, "snapshot", "create", "known-good").returncode == 0
    upstream.add(WheelSpec("alpha", "2.0", requires=["beta"]))
    assert tfmirror(outer, "sync", "pypi").returncode == 0
    old = upstream.files["alpha-1.0-py3-none-any.whl"]
    # A full bundle carries the snapshot and alpha 1.0, which only the snapshot holds now.
    export(outer, tmp_path / "b1", keys, "--full")
    index = json.loads((tmp_path / "b1" / "bundle.json").read_text())
    assert [i["name"] for i in index["items"] if i["kind"] == "snapshot"] == [
        "snapshots/known-good.json"
    ]
    assert old.sha256 in {i["sha256"] for i in blob_items(tmp_path / "b1")}
    assert tfmirror(inner, "bundle", "import", str(tmp_path / "b1"), "--trust", pub).returncode == 0
    # The next one does not carry it again.
    assert tfmirror(outer, "snapshot", "create", "later").returncode == 0
    export(outer, tmp_path / "b2", keys)
    index = json.loads((tmp_path / "b2" / "bundle.json").read_text())
    assert [i["name"] for i in index["items"] if i["kind"] == "snapshot"] == [
        "snapshots/later.json"
    ]
    assert tfmirror(inner, "bundle", "import", str(tmp_path / "b2"), "--trust", pub).returncode == 0
    listed = tfmirror(inner, "snapshot", "list").stdout
    assert listed.startswith("known-good\t") and "\nlater\t" in listed

    config = load_config(str(inner))
    store = open_store(config.storage)
    run_gc(config, store, "manual", runner_over(store, config).keeping_out, grace_hours=0)
    venv = make_venv(tmp_path / "venv")
    with (
        WebServer(create_app(config), config.web.host, config.web.port),
        DevpiProcess(config.devpi),
    ):
        held = entry_point(config, proxied=False).union_url("known-good")
        pip = pip_install(venv, held, "alpha")
    assert pip.returncode == 0, pip.stderr
    version = subprocess.run(
        [str(venv), "-c", "import alpha; print(alpha.VERSION)"], capture_output=True, text=True
    )
    assert version.stdout.strip() == "1.0"
