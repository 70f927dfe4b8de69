"""Snapshots served: a node held on a snapshot's index installs its versions after the
live mirror moved on; a promote puts the whole fleet's default paths on it (through
nginx too), `promote --live` back on the syncs; models likewise under /hub/@NAME/.

Real devpi (started by tfmirror), the real web front, nginx, pip, uv, tensorflow_hub."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import requests

from mirror.core.config import DevpiConfig, load_config
from mirror.core.journal import Journal
from mirror.core.quarantine import add_rules, new_rule
from mirror.core.snapshots import Promotion, save_promotion
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from mirror.proxy.nginx import entry_point
from testkit.mirror_env import make_config, operator_config
from testkit.servers import clean_pip_env, free_port, make_venv, pip_install
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.functional.test_bundle import tfmirror
from tests.functional.test_fleet_index import uv_install
from tests.functional.test_fleet_proxy import entry, with_proxy
from tests.functional.test_hub import assert_same_outputs, load_outputs
from tests.functional.test_pypi_sync import sync
from tests.functional.test_quarantine import serving, within
from tests.support.runner import runner_over
from tfmirror.app import create_app
from tfmirror.snapshotting import take_snapshot
from verify.jobs import run_gc

PEP691 = "application/vnd.pypi.simple.v1+json"
# What pip asks with: nginx keeps one cached page per Accept header.
PIP_ACCEPT = f"{PEP691}, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"


def offers(page_url: str, filename: str) -> bool:
    return filename in requests.get(page_url, headers={"Accept": PIP_ACCEPT}, timeout=10).text


def installed(venv: Path, project: str) -> str:
    shown = subprocess.run(
        [str(venv), "-m", "pip", "show", project],
        capture_output=True,
        text=True,
        env=clean_pip_env(),
        check=True,
    )
    return next(
        ln.split(": ", 1)[1] for ln in shown.stdout.splitlines() if ln.startswith("Version")
    )


def test_pip_and_uv_on_a_snapshot_index_get_its_versions_after_a_newer_sync(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0"))
    path = operator_config(tmp_path, upstream.index_url, ["alpha"])
    config = load_config(str(path))
    assert tfmirror(path, "sync", "pypi").returncode == 0
    assert tfmirror(path, "snapshot", "create", "tuesday").returncode == 0
    upstream.add(WheelSpec("alpha", "1.1", requires=["beta"]))
    assert tfmirror(path, "sync", "pypi").returncode == 0
    store = open_store(config.storage)
    # The live mirror no longer lists alpha 1.0; only the snapshot keeps its blob.
    run_gc(config, store, "manual", runner_over(store, config).keeping_out, grace_hours=0)

    # What the fleet is told (through nginx where this machine has it) ...
    conf = tfmirror(path, "pip-conf", "--snapshot", "tuesday").stdout
    base = entry_point(config).base_url
    assert f"index-url = {base}/{config.devpi.index}/@tuesday/+simple/" in conf
    env_conf = tfmirror(path, "pip-conf", "--env", "default", "--snapshot", "tuesday").stdout
    assert f"index-url = {base}/{config.devpi.user}/default/@tuesday/+simple/" in env_conf
    # ... and the same paths on the front, which this test runs alone.
    front = config.web.base_url
    held_index = f"{front}/{config.devpi.index}/@tuesday/+simple/"
    env_index = f"{front}/{config.devpi.user}/default/@tuesday/+simple/"
    missing = tfmirror(path, "pip-conf", "--snapshot", "friday")
    assert missing.returncode == 2 and "does not exist" in missing.stderr

    lock = tmp_path / "tuesday.txt"
    locked = tfmirror(path, "lock", "--snapshot", "tuesday", "-o", str(lock))
    assert locked.returncode == 0, locked.stderr
    assert "alpha==1.0" in lock.read_text() and "/default/@tuesday/+simple/" in lock.read_text()

    with serving(config):
        live_index = entry_point(config, proxied=False).index_url
        for index in (held_index, env_index):
            venv = make_venv(tmp_path / f"pip-{len(index)}")
            got = pip_install(venv, index, "alpha")
            assert got.returncode == 0, got.stderr
            assert installed(venv, "alpha") == "1.0"
        uv_venv = tmp_path / "uv-venv"
        got = uv_install(uv_venv, env_index, "alpha")
        assert got.returncode == 0, got.stderr
        assert "alpha==1.0" in got.stderr
        hashed = make_venv(tmp_path / "hashed")
        got = pip_install(hashed, env_index, "--require-hashes", "-r", str(lock))
        assert got.returncode == 0, got.stderr
        # The live index has moved on, and `@live` is it whatever is promoted.
        live = make_venv(tmp_path / "live")
        assert pip_install(live, live_index, "alpha").returncode == 0
        assert installed(live, "alpha") == "1.1"
        at_live = requests.get(live_index.replace("/+simple/", "/@live/+simple/") + "alpha/")
        assert "alpha-1.1" in at_live.text and "alpha-1.0" not in at_live.text
        nothing = requests.get(held_index.replace("@tuesday", "@friday") + "alpha/")
        assert nothing.status_code == 404 and "no snapshot 'friday'" in nothing.text

        # Quarantine still wins: gone from the snapshot's pages, 410 on its file.
        page = requests.get(f"{held_index}alpha/", headers={"Accept": PEP691}).json()
        file_url = requests.compat.urljoin(f"{held_index}alpha/", page["files"][0]["url"])
        add_rules(store, [new_rule("alpha==1.0", "CVE-2026-0002", "ops@host")])
        assert requests.get(f"{held_index}alpha/").status_code == 404
        gone = requests.get(file_url, allow_redirects=False)
        assert gone.status_code == 410 and "CVE-2026-0002" in gone.text
    shown = tfmirror(path, "snapshot", "show", "tuesday")
    assert "quarantined: alpha 1.0 (CVE-2026-0002)" in shown.stdout, shown.stdout


def test_promote_moves_the_fleet_through_nginx_and_promote_live_moves_it_back(
    nginx: str, devpi: DevpiConfig, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0"))
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
    config = with_proxy(config, nginx, page_cache_seconds=1)

    report, store = sync(config)
    assert report.ok

    take_snapshot(store, "known-good", "ops@host", "before 2.0")
    upstream.add(WheelSpec("alpha", "2.0"))
    report, _ = sync(config)
    assert report.ok
    run_gc(config, store, "manual", runner_over(store, config).keeping_out, grace_hours=0)
    index = entry_point(config).index_url
    with entry(config, devpi):
        venv = make_venv(tmp_path / "before")
        assert pip_install(venv, index, "alpha").returncode == 0
        assert installed(venv, "alpha") == "2.0"

        save_promotion(store, Promotion("known-good", "now", "ops@host"))
        # Within the page cache's lifetime, a fresh node gets the held set.
        # (a stale page may go out once while nginx refreshes it in the background)
        assert within(5, lambda: not offers(f"{index}alpha/", "alpha-2.0"))
        held = make_venv(tmp_path / "held")
        got = pip_install(held, index, "alpha")
        assert got.returncode == 0, got.stderr
        assert installed(held, "alpha") == "1.0"
        status = requests.get(f"{config.proxy.base_url}/api/status").json()
        assert status["promoted"]["snapshot"] == "known-good"
        assert status["promoted"]["live_beyond"]["changed"] == [
            "default/py3.11-manylinux_2_28_x86_64: alpha 1.0 -> 2.0"
        ]
        metrics = requests.get(f"{config.proxy.base_url}/metrics").text
        assert 'tfmirror_promoted_snapshot{snapshot="known-good"} 1.0' in metrics
        assert "tfmirror_live_beyond_promoted 1.0" in metrics
        page = requests.get(f"{config.proxy.base_url}/").text
        assert "Snapshot <code>known-good</code>" in page and "alpha 1.0 -&gt; 2.0" in page

        save_promotion(store, Promotion())
        assert within(5, lambda: offers(f"{index}alpha/", "alpha-2.0"))
        fresh = make_venv(tmp_path / "after")
        assert pip_install(fresh, index, "alpha").returncode == 0
        assert installed(fresh, "alpha") == "2.0"


def test_promote_and_delete_from_the_cli_are_journaled_and_guarded(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0"))
    path = operator_config(tmp_path, upstream.index_url, ["alpha"])
    store = open_store(load_config(str(path)).storage)
    assert tfmirror(path, "sync", "pypi").returncode == 0
    assert tfmirror(path, "snapshot", "create", "a").returncode == 0
    promoted = tfmirror(path, "snapshot", "promote", "a", "--note", "rollback of 2.0")
    assert promoted.returncode == 0, promoted.stderr
    assert "serve snapshot a; before: live" in promoted.stdout
    refused = tfmirror(path, "snapshot", "delete", "a")
    assert refused.returncode == 2 and "is what the fleet is on" in refused.stderr
    for args, says in (
        (("promote", "nope"), "does not exist"),
        (("promote",), "one of the arguments"),
        (("create", "live"), "@live is always the live mirror"),
    ):
        proc = tfmirror(path, "snapshot", *args)
        assert proc.returncode == 2 and says in proc.stderr, (args, proc.stderr)
    back = tfmirror(path, "snapshot", "promote", "--live")
    assert back.returncode == 0 and "before: a" in back.stdout
    assert tfmirror(path, "snapshot", "delete", "a").returncode == 0
    events = [(c["event"], e["reason"]) for e in Journal(store).history() for c in e["changes"]]
    assert ("snapshot promoted", "rollback of 2.0") in events
    assert ("live promoted", "promote live") in events


def test_hub_load_of_a_replaced_model_gets_the_snapshots_bytes_and_after_promote_by_default(
    saved_models: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    models_dir, expected = saved_models
    handle = "https://tfhub.dev/google/tfmirror-test/replaced/1"
    path = tmp_path / "tfmirror.toml"
    path.write_text(f'[storage]\npath = "store"\n[web]\nport = {free_port()}\n')
    config = load_config(str(path))
    imported = tfmirror(path, "hub", "import", str(models_dir / "keras"), "--handle", handle)
    assert imported.returncode == 0, imported.stderr
    assert tfmirror(path, "snapshot", "create", "v1").returncode == 0
    # The handle now names another model (a republished version, as upstreams do).
    replaced = tfmirror(path, "hub", "import", str(models_dir / "lookup"), "--handle", handle)
    assert replaced.returncode == 0, replaced.stderr

    base = config.web.base_url
    model = "google/tfmirror-test/replaced/1"
    with WebServer(create_app(config), config.web.host, config.web.port):
        held = load_outputs(f"{base}/hub/@v1/{model}", "keras", tmp_path / "c1")
        assert_same_outputs(held, expected["keras"])
        live = load_outputs(f"{base}/hub/{model}", "lookup", tmp_path / "c2")
        assert_same_outputs(live, expected["lookup"])
        listed = requests.get(f"{base}/hub/@v1/", headers={"Accept": "application/json"}).json()
        assert listed["models"][0]["mirror_handle"].endswith(f"/hub/@v1/{model}")

        # The Keras model and the lookup table take and give different tensors: each
        # move of the fleet between them is a contract change the promote must accept.
        accept = "--accept-contract-change"
        assert tfmirror(path, "snapshot", "promote", "v1").returncode == 1
        assert tfmirror(path, "snapshot", "promote", "v1", accept).returncode == 0
        promoted = load_outputs(f"{base}/hub/{model}", "keras", tmp_path / "c3")
        assert_same_outputs(promoted, expected["keras"])
        # Prefetch of the original handle, from the snapshot, then loaded offline.
        cache = tmp_path / "prefetched"
        assert tfmirror(path, "snapshot", "promote", "--live", accept).returncode == 0
        fetched = tfmirror(
            path, "hub", "prefetch", handle, "--cache-dir", str(cache), "--snapshot", "v1"
        )
        assert fetched.returncode == 0, fetched.stderr
    offline = load_outputs(handle, "keras", cache, offline=True)
    assert_same_outputs(offline, expected["keras"])


def test_a_snapshot_made_again_under_its_name_is_served_as_made_again_held_or_promoted(
    upstream: Upstream, tmp_path: Path
) -> None:
    """A running front serves what the snapshot document now holds, not what it held
    under that name when the front first read it."""
    upstream.add(WheelSpec("alpha", "1.0"))
    path = operator_config(tmp_path, upstream.index_url, ["alpha"])
    # Three syncs on a shared, loaded test machine: devpi's answers get this timeout too.
    path.write_text(path.read_text().replace("timeout = 2\n", "timeout = 20\n"))
    config = load_config(str(path))
    assert tfmirror(path, "sync", "pypi").returncode == 0
    assert tfmirror(path, "snapshot", "create", "kg").returncode == 0
    held = f"{config.web.base_url}/{config.devpi.index}/@kg/+simple/alpha/"
    default = f"{config.web.base_url}/{config.devpi.index}/+simple/alpha/"

    def remake_kg(version: str) -> None:
        upstream.add(WheelSpec("alpha", version))
        assert tfmirror(path, "sync", "pypi").returncode == 0
        assert tfmirror(path, "snapshot", "delete", "kg").returncode == 0
        assert tfmirror(path, "snapshot", "create", "kg").returncode == 0

    with WebServer(create_app(config), config.web.host, config.web.port):
        assert offers(held, "alpha-1.0")
        remake_kg("1.1")
        # No restart: within the few seconds a front takes to look at the names again.
        assert within(10, lambda: offers(held, "alpha-1.1")), requests.get(held).text
        assert not offers(held, "alpha-1.0")

        # The fleet's default path reads a promoted snapshot through the same readers.
        assert tfmirror(path, "snapshot", "promote", "kg").returncode == 0
        assert offers(default, "alpha-1.1")
        assert tfmirror(path, "snapshot", "promote", "--live").returncode == 0
        remake_kg("1.2")
        assert tfmirror(path, "snapshot", "promote", "kg").returncode == 0
        assert within(10, lambda: offers(default, "alpha-1.2")), requests.get(default).text
        assert not offers(default, "alpha-1.1")
