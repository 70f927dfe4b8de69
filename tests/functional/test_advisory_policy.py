"""Advisories as policy: a "block" environment's closure avoids affected releases, a
mirrored file a new advisory covers is withheld (410 naming it), a waiver lets one
through until its day (a day the test moves), a `MAL-` release is kept out even where
the policy only reports. A local upstream, an `all.zip` built from OSV-shaped records,
real devpi, the real web front, real pip in clean venvs."""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from mirror.advisories.sync import sync_advisories
from mirror.core.config import Config, DevpiConfig, load_config
from mirror.core.config.advisories import AdvisoriesConfig, Waiver
from mirror.core.journal import Journal
from mirror.core.storage import BlobStore, open_store
from mirror.core.web_server import WebServer
from mirror.pypi.manifest import load_manifest
from mirror.pypi.sync import PypiSync, SyncReport
from sync_jobs.metrics import render_metrics
from sync_jobs.page import render_page
from sync_jobs.status import collect_status
from testkit.mirror_env import LINUX, make_config, operator_config
from testkit.servers import make_venv, pip_install
from testkit.upstream import Hosted, Upstream
from testkit.wheels import WheelSpec
from tests.functional.test_bundle import NO_PROXY, tfmirror
from tests.functional.test_cooldown import installed
from tests.support.osv_records import GHSA, MALICIOUS, export
from tfmirror.app import create_app
from tfmirror.commands import audit as audit_command
from tfmirror.parts import MirrorParts
from tfmirror.services import services_for_sync

LINUX_ID = "py3.11-manylinux_2_28_x86_64"
PEP691 = "application/vnd.pypi.simple.v1+json"
DAY = 86400.0
TODAY = datetime(2027, 3, 1, 12, tzinfo=UTC).timestamp()

# A newer release broken again, no fix yet (critical by its vector): block must step back.
NEW: dict[str, Any] = copy.deepcopy(GHSA)
NEW |= {
    "id": "GHSA-2x4p-7q9v-3m8r",
    "aliases": ["CVE-2027-11111"],
    "summary": "Heap overflow in the 1.3 parser",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
}
NEW["affected"][0]["ranges"] = [{"type": "ECOSYSTEM", "events": [{"introduced": "1.3.0"}]}]


def sync(config: Config, now: float = TODAY) -> tuple[SyncReport, BlobStore]:
    store = open_store(config.storage)
    with services_for_sync(config, store) as devpi:
        return PypiSync(config, store, devpi, clock=lambda: now).run(), store


def with_advisories(config: Config, zip_path: Path, *waivers: Waiver) -> Config:
    return replace(config, advisories=AdvisoriesConfig(source=str(zip_path), waivers=waivers))


def versions(store: BlobStore, env: str) -> dict[str, str]:
    manifest = load_manifest(store, env, LINUX_ID)
    assert manifest is not None
    return {w.project: w.version for w in manifest.files}


def changes(store: BlobStore, event: str) -> list[dict[str, Any]]:
    return [c for e in Journal(store).entries() for c in e.doc["changes"] if c["event"] == event]


@contextmanager
def front(config: Config) -> Iterator[str]:
    with WebServer(create_app(config), config.web.host, config.web.port):
        yield config.web.base_url


def page_versions(base: str, config: Config, env: str, project: str) -> list[str]:
    url = f"{base}/{config.devpi.user}/{env}/+simple/{project}/"
    page = requests.get(url, headers={"Accept": PEP691}, timeout=10)
    return page.json()["versions"] if page.status_code == 200 else []


def file_url(base: str, config: Config, hosted: Hosted) -> str:
    sha = hosted.sha256
    return f"{base}/{config.devpi.index}/+f/{sha[:3]}/{sha[3:16]}/{hosted.spec.filename}"


def audit(
    config: Config, store: BlobStore, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    """`tfmirror audit ARGS` against this config, in process: its exit code and output."""
    parser = argparse.ArgumentParser()
    audit_command.arguments(parser)
    capsys.readouterr()
    code = audit_command.run(MirrorParts(config, store), parser.parse_args(args))
    return code, capsys.readouterr().out


def test_block_steps_back_withholds_the_mirrored_file_and_a_waiver_holds_until_its_day(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("tiny-lib", "1.0"))  # GHSA-cfgp-2977-2fmm: fixed in 1.2.0
    upstream.add(WheelSpec("tiny-lib", "1.2.0"))
    broken = upstream.add(WheelSpec("tiny-lib", "1.3.0"))  # NEW: no fix
    zip_path = tmp_path / "all.zip"
    zip_path.write_bytes(export([GHSA, NEW]))
    plain = make_config(
        tmp_path,
        upstream.index_url,
        devpi,
        [],
        environments={"strict": {"requirements": ["tiny-lib"], "targets": [LINUX]}},
        pypi={"advisories": "block"},
    )
    # Mirrored before any advisory was known: the newest.
    report, store = sync(plain)
    assert report.ok, report.failures
    assert versions(store, "strict") == {"tiny-lib": "1.3.0"}

    config = with_advisories(plain, zip_path)
    assert sync_advisories(config, store, "manual").ok
    report, store = sync(config)

    # The closure moved to the newest release no blocking advisory covers.
    assert report.ok, report.failures
    assert versions(store, "strict") == {"tiny-lib": "1.2.0"}
    (left,) = changes(store, "left for an advisory")
    assert (left["project"], left["version"], left["advisory"]) == (
        "tiny-lib",
        "1.3.0",
        "GHSA-2x4p-7q9v-3m8r",
    )
    (withheld,) = changes(store, "withheld")
    assert withheld["spec"] == broken.spec.filename and withheld["source"] == "advisory"
    with front(config) as base:
        assert page_versions(base, config, "strict", "tiny-lib") == ["1.2.0"]
        gone = requests.get(file_url(base, config, broken), timeout=10)
        assert gone.status_code == 410 and "GHSA-2x4p-7q9v-3m8r" in gone.text
        venv = make_venv(tmp_path / "node")
        proc = pip_install(venv, f"{base}/{config.devpi.user}/strict/+simple/", "tiny-lib")
        assert proc.returncode == 0, proc.stderr
        assert installed(venv, "tiny_lib") == "1.2.0"
    assert store.touch_blob(broken.sha256)  # kept for forensics

    # Only an affected release meets the requirements: the target fails, names the
    # advisory, project and fix, and keeps serving its last closure.
    pinned = replace(
        config,
        pypi=replace(
            config.pypi,
            environments=tuple(
                replace(e, requirements=("tiny-lib>=1.3",)) for e in config.pypi.environments
            ),
        ),
    )
    report, store = sync(pinned)
    (failure,) = report.failures
    assert failure.name == f"strict/{LINUX_ID}"
    assert "tiny-lib 1.3.0: advisory GHSA-2x4p-7q9v-3m8r (critical; fixed in no fix listed)" in (
        failure.reason
    )
    assert versions(store, "strict") == {"tiny-lib": "1.2.0"}

    # A waiver lets it through until its last day; the day after, it stops by itself.
    waiver = Waiver("GHSA-2x4p-7q9v-3m8r", ("tiny-lib",), date(2027, 3, 2), "parser unused")
    waived = with_advisories(plain, zip_path, waiver)
    report, store = sync(waived, TODAY + DAY)
    assert report.ok, report.failures
    assert versions(store, "strict") == {"tiny-lib": "1.3.0"}
    (use,) = changes(store, "advisory waived")
    assert use["until"] == "2027-03-02" and use["environments"] == ["strict"]
    assert [c["spec"] for c in changes(store, "released")] == [broken.spec.filename]
    report, store = sync(waived, TODAY + DAY)  # the same day again: nothing new to say
    assert len(changes(store, "advisory waived")) == 1

    report, store = sync(waived, TODAY + 2 * DAY)
    assert report.ok, report.failures
    assert versions(store, "strict") == {"tiny-lib": "1.2.0"}
    (expiry,) = changes(store, "waiver expired")
    assert expiry["advisory"] == "GHSA-2x4p-7q9v-3m8r"
    with front(waived) as base:
        assert requests.get(file_url(base, waived, broken), timeout=10).status_code == 410


def test_report_keeps_the_release_but_a_malicious_one_is_kept_out_everywhere(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.add(WheelSpec("tiny-lib", "1.0"))  # GHSA-cfgp-2977-2fmm, high
    upstream.add(WheelSpec("evil-lib", "6.6.5"))
    evil = upstream.add(WheelSpec("evil-lib", "6.6.6"))  # MAL-2024-1234
    zip_path = tmp_path / "all.zip"
    zip_path.write_bytes(export([GHSA, MALICIOUS]))
    config = with_advisories(
        make_config(
            tmp_path,
            upstream.index_url,
            devpi,
            [],
            environments={"loose": {"requirements": ["tiny-lib", "evil-lib"], "targets": [LINUX]}},
        ),
        zip_path,
    )
    store = open_store(config.storage)
    assert sync_advisories(config, store, "manual").ok

    report, store = sync(config)

    assert report.ok, report.failures
    assert versions(store, "loose") == {"tiny-lib": "1.0", "evil-lib": "6.6.5"}
    assert upstream.hits[evil.spec.filename] == 0  # not even a prefetch's guess
    with front(config) as base:
        assert page_versions(base, config, "loose", "tiny-lib") == ["1.0"]
        assert page_versions(base, config, "loose", "evil-lib") == ["6.6.5"]
        # Never in a closure, so never mirrored: not a file of this mirror at all.
        assert requests.get(file_url(base, config, evil), timeout=10).status_code == 404
        venv = make_venv(tmp_path / "node")
        proc = pip_install(venv, f"{base}/{config.devpi.user}/loose/+simple/", "tiny-lib")
        assert proc.returncode == 0, proc.stderr
        assert installed(venv, "tiny_lib") == "1.0"
    # What the page and the API show of it.
    status = collect_status(config, store, config.web.base_url)
    (row,) = [r for r in status.as_json()["advisories"]["loose"] if r["project"] == "tiny-lib"]
    assert (row["id"], row["version"], row["severity"], row["fixed_in"]) == (
        "GHSA-cfgp-2977-2fmm",
        "1.0",
        "high",
        ["1.2.0"],
    )
    assert row["action"] == "reported" and row["waived_until"] is None
    code, out = audit(config, store, capsys, "--env", "loose")
    assert code == 1 and "GHSA-cfgp-2977-2fmm  tiny-lib 1.0  high 8.8  fixed in 1.2.0" in out

    # Waived: still listed, as waived, and no longer failing the audit.
    until = date.today() + timedelta(days=30)
    waiver = Waiver("CVE-2023-40590", ("tiny-lib",), until, "no untrusted archives")
    waived = with_advisories(config, zip_path, waiver)
    code, out = audit(waived, store, capsys, "--env", "loose")
    assert code == 0, out
    assert f"fixed in 1.2.0  waived until {until.isoformat()}: no untrusted archives" in out
    code, out = audit(waived, store, capsys, "--env", "loose", "--json")
    (doc,) = json.loads(out)["scopes"]["loose"]
    assert doc["waived_until"] == until.isoformat()
    (row,) = [
        r
        for r in collect_status(waived, store, "").as_json()["advisories"]["loose"]
        if r["project"] == "tiny-lib"
    ]
    assert (row["action"], row["waived_until"]) == ("waived", until.isoformat())
    page = render_page(status)
    assert "Known vulnerabilities" in page and "<code>GHSA-cfgp-2977-2fmm</code>" in page
    metrics = render_metrics(status).decode()
    assert 'tfmirror_advisories{environment="loose",severity="high"} 1.0' in metrics


@pytest.mark.parametrize("mode", ["report", "block"])
def test_without_a_database_nothing_changes(
    upstream: Upstream, devpi: DevpiConfig, tmp_path: Path, mode: str
) -> None:
    upstream.add(WheelSpec("tiny-lib", "1.0"))
    config = make_config(
        tmp_path, upstream.index_url, devpi, ["tiny-lib"], pypi={"advisories": mode}
    )
    report, store = sync(config)
    assert report.ok, report.failures
    assert versions(store, "default") == {"tiny-lib": "1.0"}


def test_a_bundle_carries_the_database_and_the_inner_side_withholds_the_same(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0"))
    bad = upstream.add(WheelSpec("evil-lib", "6.6.6"))
    zip_path = tmp_path / "all.zip"
    (tmp_path / "outer").mkdir()
    (tmp_path / "inner").mkdir()
    extra = f'\n[advisories]\nsource = "{zip_path}"\n'
    outer = operator_config(
        tmp_path / "outer", upstream.index_url, ["alpha", "evil-lib"], extra=extra
    )
    inner = operator_config(tmp_path / "inner", "", ["alpha"], extra=NO_PROXY)
    # Mirrored before the record was published: then it is, and the outer side learns it.
    zip_path.write_bytes(export([GHSA]))
    assert tfmirror(outer, "sync", "advisories").returncode == 0
    assert tfmirror(outer, "sync", "pypi").returncode == 0
    zip_path.write_bytes(export([GHSA, MALICIOUS]))
    assert tfmirror(outer, "sync", "advisories").returncode == 0
    synced = tfmirror(outer, "sync", "pypi")
    # No release of evil-lib escapes: the target fails naming it, and keeps its closure
    # without the file.
    assert synced.returncode == 1 and "MAL-2024-1234 (malicious" in synced.stdout + synced.stderr
    keys = tmp_path / "keys"
    assert tfmirror(outer, "bundle", "keygen", "--out", str(keys)).returncode == 0
    made = tfmirror(
        outer, "bundle", "export", "--key", str(keys / "bundle.key"), "-o", str(tmp_path / "b1")
    )
    assert made.returncode == 0, made.stderr
    index = json.loads((tmp_path / "b1" / "bundle.json").read_text())
    assert [i["name"] for i in index["items"] if i["kind"] == "advisories"] == [
        "advisories/current.json"
    ]

    imported = tfmirror(
        inner, "bundle", "import", str(tmp_path / "b1"), "--trust", str(keys / "bundle.pub")
    )
    assert imported.returncode == 0, imported.stderr
    config = load_config(str(inner))
    store = open_store(config.storage)
    outer_store = open_store(load_config(str(outer)).storage)
    assert store.get("advisories/current.json") == outer_store.get("advisories/current.json")
    (withheld,) = changes(store, "withheld")
    assert withheld["spec"] == bad.spec.filename
    pages = create_app(config, store).test_client()
    sha = bad.sha256
    gone = pages.get(f"/{config.devpi.index}/+f/{sha[:3]}/{sha[3:16]}/{bad.spec.filename}")
    assert gone.status_code == 410 and "MAL-2024-1234" in gone.get_data(as_text=True)
    union = pages.get(f"/{config.devpi.index}/+simple/evil-lib/", headers={"Accept": PEP691})
    assert union.status_code == 404
    inner_audit = tfmirror(inner, "audit")
    assert inner_audit.returncode == 1 and "GHSA" not in inner_audit.stdout
    assert "MAL-2024-1234  evil-lib 6.6.6  critical" in inner_audit.stdout
