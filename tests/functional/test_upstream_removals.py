"""What upstream takes back reaches the fleet: removed files and PEP 792 status.

A local PEP 691 upstream that removes files and marks projects; real devpi, real pip."""

from __future__ import annotations

from pathlib import Path

import requests

from mirror.core.config import DevpiConfig
from mirror.core.journal import Journal
from mirror.core.quarantine import read_quarantine
from mirror.core.storage import BlobStore
from mirror.core.web_server import WebServer
from mirror.pypi.manifest import load_manifest
from sync_jobs.page import render_page
from sync_jobs.status import collect_status
from testkit.mirror_env import make_config
from testkit.servers import make_venv, pip_install
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.functional.test_pypi_sync import sync
from tests.support.runner import runner_over
from tfmirror.app import create_app
from verify.jobs import run_gc

LINUX_ID = "py3.11-manylinux_2_28_x86_64"
PEP691 = "application/vnd.pypi.simple.v1+json"


def versions(store: BlobStore) -> dict[str, str]:
    manifest = load_manifest(store, "default", LINUX_ID)
    assert manifest is not None
    return {w.project: w.version for w in manifest.files}


def test_a_file_upstream_removes_is_quarantined_and_comes_back_when_upstream_lists_it(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0"))
    bad = upstream.add(WheelSpec("alpha", "2.0"))
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha"])
    report, store = sync(config)
    assert report.ok and versions(store) == {"alpha": "2.0"}

    del upstream.files[bad.spec.filename]  # a malware takedown: no feed, the page changes
    report, store = sync(config)

    assert report.ok, report.failures
    assert versions(store) == {"alpha": "1.0"}  # what upstream's users now get
    (rule,) = read_quarantine(store).rules
    assert (rule.spec, rule.source) == (bad.spec.filename, "upstream")
    assert "no longer lists it" in rule.reason
    assert store.has_blob(bad.sha256)  # kept for forensics, gc or not
    assert (
        bad.sha256
        not in run_gc(
            config, store, "manual", runner_over(store, config).keeping_out, grace_hours=0
        ).removed
    )
    index = config.devpi.index
    path = f"/{index}/+f/{bad.sha256[:3]}/{bad.sha256[3:16]}/{bad.spec.filename}"
    with WebServer(create_app(config), config.web.host, config.web.port):
        front = config.web.base_url
        assert requests.get(f"{front}{path}", allow_redirects=False).status_code == 410
        assert requests.get(f"{config.devpi.url}{path}").status_code in (404, 410)
        venv = make_venv(tmp_path / "venv")
        assert pip_install(venv, config.devpi.index_url, "alpha==2.0").returncode != 0
    (entry,) = [
        e
        for e in Journal(store).history(project="alpha")
        if any(c["event"] == "quarantined" for c in e["changes"])
    ]
    assert {c["event"] for c in entry["changes"]} >= {"quarantined", "file removed", "file added"}

    upstream.add(bad.spec)  # upstream lists it again (the same bytes)
    report, store = sync(config)
    assert report.ok, report.failures
    assert read_quarantine(store).rules == ()
    assert versions(store) == {"alpha": "2.0"}
    released = Journal(store).recent(1)[0]["changes"]
    assert {"event": "released", "spec": bad.spec.filename} in [
        {k: c[k] for k in ("event", "spec") if k in c} for c in released
    ]


def test_keep_leaves_removed_files_offered(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0"))
    upstream.add(WheelSpec("beta", "1.0"))
    config = make_config(
        tmp_path, upstream.index_url, devpi, ["alpha==1.0"], pypi={"on_upstream_removal": "keep"}
    )
    assert sync(config)[0].ok
    del upstream.files["alpha-1.0-py3-none-any.whl"]
    report, store = sync(config)
    assert read_quarantine(store).rules == ()
    assert versions(store) == {"alpha": "1.0"}  # the pin can no longer resolve: kept
    assert not report.ok


def test_pep_792_quarantined_projects_are_pulled_whole_and_archived_ones_say_so(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0"))
    upstream.add(WheelSpec("gamma", "1.0"))
    config = make_config(tmp_path, upstream.index_url, devpi, ["alpha", "gamma"])
    assert sync(config)[0].ok
    upstream.status["beta"] = {"status": "quarantined", "reason": "malware"}
    upstream.status["gamma"] = {"status": "archived", "reason": "moved to gamma2"}

    report, store = sync(config)

    (rule,) = read_quarantine(store).rules
    assert (rule.spec, rule.source) == ("beta", "upstream") and "malware" in rule.reason
    (failure,) = report.failures  # alpha needs beta: not resolved around, said
    assert "beta-1.0-py3-none-any.whl is quarantined" in failure.reason
    with WebServer(create_app(config), config.web.host, config.web.port):
        base = f"{config.web.base_url}/{config.devpi.index}/+simple"
        assert requests.get(f"{base}/beta/").status_code == 404
        gamma = requests.get(f"{base}/gamma/", headers={"Accept": PEP691}).json()
        assert gamma["project-status"] == {"status": "archived", "reason": "moved to gamma2"}
        html = requests.get(f"{base}/gamma/", headers={"Accept": "text/html"}).text
        assert '<meta name="pypi:project-status" content="archived">' in html
    page = render_page(collect_status(config, store, config.web.base_url))
    assert "moved to gamma2" in page and "malware" in page

    upstream.status.pop("beta")  # upstream lifts it
    report, store = sync(config)
    assert report.ok, report.failures
    assert read_quarantine(store).rules == ()
