"""The status page in a real browser (Debian's headless Chromium) against a live server
with real run records: what an operator sees, and a screenshot kept as a test artifact."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hub_cache.hub_sync import HubSync
from mirror.core.config import parse_config
from mirror.core.runs import RunRecord
from mirror.core.storage import LocalStore
from mirror.core.web_server import WebServer
from testkit.servers import free_port
from tests.support.archives import malicious
from tests.support.debian import require_debian_tool
from tests.support.hub_upstream import HubUpstream
from tfmirror.app import create_app

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium() -> str:
    return require_debian_tool("chromium", "chromium")


def browse(chromium: str, url: str, profile: Path, *extra: str) -> str:
    proc = subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_operator_sees_jobs_and_a_failed_hub_sync_in_red(chromium: str, tmp_path: Path) -> None:
    port = free_port()
    with HubUpstream() as up:
        handle = up.add("google/evil/1", malicious("symlink"))
        config = parse_config(
            {
                "storage": {"path": "store"},
                "web": {"port": port},
                "hub": {"models": [handle], "retries": 0},
            },
            tmp_path,
        )
        store = LocalStore(config.storage.path)
        RunRecord.begin("pypi", "schedule").finish(
            store, True, {"new": 34, "skipped": 0, "failed": 0}, 635_170_625, []
        )
        assert not HubSync(config, store).run("schedule").ok  # a real failed hub sync

    with WebServer(create_app(config, store), "127.0.0.1", port):
        url = f"http://127.0.0.1:{port}/"
        dom = browse(chromium, url, tmp_path / "profile", "--dump-dom")
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "status-page.png"
        shot.unlink(missing_ok=True)
        browse(
            chromium,
            url,
            tmp_path / "profile2",
            f"--screenshot={shot}",
            "--window-size=1400,1100",
            "--hide-scrollbars",
        )

    assert "tfmirror" in dom and "failing: hub" in dom
    assert '<tr class="row-ok" data-job="pypi">' in dom
    hub_row = dom.split('data-job="hub"')[1].split("</tr>")[0]
    assert "failed" in hub_row and "symlink" in hub_row and "/etc/passwd" in hub_row
    # The page's own stylesheet paints a failed row red.
    assert "tr.row-failed td{background:#fdecee}" in dom and ".failed{color:#b00020" in dom
    assert shot.is_file() and shot.stat().st_size > 10_000
