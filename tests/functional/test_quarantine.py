"""Quarantine: an operator pulls a release from the whole fleet, and puts it back.

Real devpi (started by tfmirror), the real web front, real pip; the CLI as operators
run it."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from mirror.core.config import Config, DevpiConfig, load_config
from mirror.core.journal import Journal
from mirror.core.quarantine import add_rules, new_rule, remove_rule
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from mirror.proxy.nginx import entry_point
from testkit.mirror_env import make_config, operator_config
from testkit.servers import free_port, make_venv, pip_install
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.functional.test_bundle import tfmirror
from tests.functional.test_fleet_proxy import entry, with_proxy
from tests.functional.test_pypi_sync import sync
from tests.support.runner import runner_over
from tfmirror.app import create_app
from tfmirror.services import offer_manifests, own_devpi
from verify.jobs import run_gc

PEP691 = "application/vnd.pypi.simple.v1+json"


def within(seconds: float, check: Callable[[], bool]) -> bool:
    """`check` holds at some point before `seconds` pass."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@contextmanager
def serving(config: Config) -> Iterator[None]:
    """devpi and the web front, as `tfmirror up` starts them."""
    with (
        own_devpi(config, open_store(config.storage)),
        WebServer(create_app(config), config.web.host, config.web.port),
    ):
        yield


def test_an_operator_quarantine_reaches_every_path_a_node_uses_and_release_undoes_it(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0"))
    bad = upstream.add(WheelSpec("alpha", "2.0"))
    upstream.add(WheelSpec("beta", "1.0"))
    path = operator_config(tmp_path, upstream.index_url, ["alpha", "beta"])
    config = load_config(str(path))
    assert tfmirror(path, "sync", "pypi").returncode == 0
    front = config.web.base_url
    devpi_index = f"{config.devpi.url}/{config.devpi.index}"
    file_path = f"/{config.devpi.index}/+f/{bad.sha256[:3]}/{bad.sha256[3:16]}/{bad.spec.filename}"
    with serving(config):
        assert requests.get(f"{config.devpi.url}{file_path}").status_code == 200  # devpi holds it

    # devpi is down: not started for it (seconds to minutes), but purged as tfmirror
    # next starts it, before it serves.
    added = tfmirror(path, "quarantine", "add", "alpha==2.0", "--reason", "CVE-2026-0001")
    assert added.returncode == 0, added.stderr
    assert "quarantined alpha==2.0 (alpha-2.0-py3-none-any.whl)" in added.stdout
    assert (
        "devpi: purging its copies of alpha ... not running; tfmirror does it as it next "
        "starts devpi, before devpi serves"
    ) in added.stdout

    store = open_store(config.storage)
    with serving(config):
        # Gone from every page: the union's and the environment's, JSON and HTML.
        for index in (config.devpi.index, f"{config.devpi.user}/default"):
            for accept in (PEP691, "text/html"):
                page = requests.get(f"{front}/{index}/+simple/alpha/", headers={"Accept": accept})
                assert page.status_code == 404, (index, accept, page.text[:200])
        assert bad.spec.filename not in requests.get(f"{devpi_index}/+simple/alpha/").text
        # The file's URL answers 410 where a node may ask: the front, and devpi itself
        # (its copy purged, so nginx finds none in its serverdir either).
        gone = requests.get(f"{front}{file_path}", allow_redirects=False)
        assert gone.status_code == 410 and "CVE-2026-0001" in gone.text
        assert requests.get(f"{config.devpi.url}{file_path}").status_code in (404, 410)
        venv = make_venv(tmp_path / "venv")
        refused = pip_install(venv, f"{devpi_index}/+simple/", "alpha==2.0")
        assert refused.returncode != 0
        assert pip_install(venv, f"{devpi_index}/+simple/", "beta").returncode == 0
        status = requests.get(f"{front}/api/status").json()
        assert status["quarantine"][0]["reason"] == "CVE-2026-0001"
    # The bytes stay for forensics, gc or not.
    assert store.has_blob(bad.sha256)
    assert (
        bad.sha256
        not in run_gc(
            config, store, "manual", runner_over(store, config).keeping_out, grace_hours=0
        ).removed
    )
    assert store.has_blob(bad.sha256)
    # The target that needs it fails its sync, naming it; it is not resolved around.
    sync = tfmirror(path, "sync", "pypi")
    assert sync.returncode == 1
    assert "alpha-2.0-py3-none-any.whl is quarantined (CVE-2026-0001)" in sync.stdout + sync.stderr

    with serving(config):
        assert bad.spec.filename not in requests.get(f"{devpi_index}/+simple/alpha/").text
        # devpi runs: it re-reads the page now, and the command says what it waits on.
        released = tfmirror(path, "quarantine", "remove", "alpha==2.0")
        assert released.returncode == 0, released.stderr
        assert "devpi: re-reading the page of alpha ... done (" in released.stdout
        venv = make_venv(tmp_path / "venv2")
        again = pip_install(venv, f"{devpi_index}/+simple/", "alpha==2.0")
        assert again.returncode == 0, again.stderr
    assert tfmirror(path, "sync", "pypi").returncode == 0

    events = [
        (c["event"], entry["reason"], entry["actor"])
        for entry in Journal(store).history(project="alpha")
        for c in entry["changes"]
        if c["event"] in ("quarantined", "released")
    ]
    assert [e[:2] for e in events] == [
        ("released", "released: CVE-2026-0001"),
        ("quarantined", "CVE-2026-0001"),
    ]
    assert all("@" in actor for _, _, actor in events)
    listed = tfmirror(path, "quarantine", "list")
    assert listed.returncode == 0 and listed.stdout == ""


def test_bad_quarantine_specs_are_one_line_and_exit_2(upstream: Upstream, tmp_path: Path) -> None:
    path = operator_config(tmp_path, upstream.index_url, ["alpha"])
    for spec, says in (
        ("alpha[gpu]==1", "give a project and versions only"),
        ("not a spec!", "is not a project, a project==version or a file name"),
    ):
        proc = tfmirror(path, "quarantine", "add", spec, "--reason", "x")
        assert proc.returncode == 2 and says in proc.stderr and len(proc.stderr.splitlines()) == 1
    missing = tfmirror(path, "quarantine", "remove", "alpha")
    assert missing.returncode == 2 and "is not quarantined" in missing.stderr


def test_a_quarantine_and_its_release_through_the_entry_point(
    nginx: str, devpi: DevpiConfig, upstream: Upstream, tmp_path: Path
) -> None:
    """Through nginx, which sends devpi's files from its serverdir without asking
    anyone: the purge of devpi's copy is what stops it."""
    upstream.add(WheelSpec("alpha", "1.0"))
    bad = upstream.add(WheelSpec("alpha", "2.0"))
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
    config = with_proxy(config, nginx, page_cache_seconds=1)
    report, store = sync(config)
    assert report.ok and report.devpi_warmed == 1
    index = entry_point(config).index_url
    with entry(config, devpi):
        page = requests.get(f"{index}alpha/", timeout=10)
        link = re.search(r'href="([^"]+alpha-2\.0[^"#]+)', page.text)
        assert link is not None, page.text
        url = requests.compat.urljoin(page.url, link.group(1))
        assert requests.get(url, timeout=10).status_code == 200

        rule = new_rule("alpha==2.0", "broken build", "ops@host", blobs=(bad.sha256,))
        add_rules(store, [rule])
        assert offer_manifests(config, store)[1] == []  # devpi purged
        # Within the page cache's lifetime (and nginx's refresh of it).
        assert within(5, lambda: requests.get(f"{index}alpha/", timeout=10).status_code == 404)
        assert requests.get(url, timeout=10).status_code == 410
        venv = make_venv(tmp_path / "venv")
        assert pip_install(venv, index, "alpha==2.0").returncode != 0

        remove_rule(store, "alpha==2.0", model=False)
        assert offer_manifests(config, store)[1] == []
        assert within(5, lambda: requests.get(url, timeout=10).status_code == 200)
        # nginx caches a page per Accept header: pip's own was cached during the quarantine.
        assert within(5, lambda: pip_install(venv, index, "alpha==2.0").returncode == 0)


def test_a_quarantined_model_answers_410_and_prefetch_refuses_it(tmp_path: Path) -> None:
    from tests.support.archives import FAKE_MODEL, tar_bytes
    from tests.support.hub_upstream import HubUpstream

    with HubUpstream() as hub_up:
        handle = hub_up.add("google/pii/1", tar_bytes(FAKE_MODEL))
        path = tmp_path / "tfmirror.toml"
        port = free_port()
        path.write_text(
            f'[storage]\npath = "store"\n[web]\nport = {port}\n'
            f'[hub]\nmodels = ["{handle}"]\ntimeout = 5\nretries = 1\n'
        )
        assert tfmirror(path, "sync", "hub").returncode == 0
    config = load_config(str(path))
    added = tfmirror(path, "quarantine", "add", "--model", handle, "--reason", "leaks PII")
    assert added.returncode == 0, added.stderr
    with WebServer(create_app(config), config.web.host, config.web.port):
        base = config.web.base_url
        answer = requests.get(f"{base}/hub/google/pii/1?tf-hub-format=compressed")
        assert answer.status_code == 410 and "leaks PII" in answer.text
        assert "google/pii/1" not in requests.get(f"{base}/hub/").text
        cache = tmp_path / "cache"
        refused = tfmirror(path, "hub", "prefetch", handle, "--cache-dir", str(cache))
        assert refused.returncode != 0
        assert "quarantined" in refused.stderr + refused.stdout
        assert tfmirror(path, "quarantine", "remove", "--model", handle).returncode == 0
        fetched = tfmirror(path, "hub", "prefetch", handle, "--cache-dir", str(cache))
        assert fetched.returncode == 0, fetched.stderr
