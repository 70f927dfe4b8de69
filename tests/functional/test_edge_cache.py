"""A rack's edge cache (`tfmirror proxy --edge URL`, no config file) in front of a real site
mirror (devpi, the web front and the site's nginx), Debian's nginx on both.

pip installs through the edge; a burst of one rack's requests for a new wheel costs the
site one fetch; with the site gone pip still installs what the rack fetched before, and
a project it never fetched fails with the edge's reason; a quarantine at the site is the
edge's answer within the page lifetime, and stays its answer with the site gone."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from mirror.core.config import DevpiConfig
from mirror.core.quarantine import add_rules, new_rule
from mirror.proxy.nginx import HEALTH_PATH
from testkit.mirror_env import make_config
from testkit.servers import free_port, make_venv, pip_install
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.functional.test_fleet_proxy import entry, with_proxy
from tests.functional.test_pypi_sync import sync
from tests.functional.test_quarantine import within
from tests.support.cli import ROOT
from tests.support.relay import Relay
from tfmirror.services import offer_manifests

RACK = 20  # one rack's nodes asking for the same new wheel at once
PAGE_SECONDS = 10  # [proxy] page_cache_seconds with no config file


@contextmanager
def edge_cache(site_url: str, folder: Path) -> Iterator[str]:
    """`tfmirror proxy --edge site_url` as an operator starts it on a rack's host: in a
    folder with no tfmirror.toml, nothing but the command line."""
    folder.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "TFMIRROR_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    args = ["proxy", "--edge", site_url, "--port", str(port), "--cache-dir", "cache"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfmirror.cli", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()  # printed once nginx answers as itself
        assert f"edge cache of {site_url} on http://127.0.0.1:{port}/" in banner, banner
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wheel_url(page_url: str, name: str) -> str:
    page = requests.get(page_url, timeout=10)
    link = re.search(rf'href="([^"]*{re.escape(name)}[^"#]*)', page.text)
    assert link is not None, page.text
    return urljoin(page.url, link.group(1))


def site_fetches(access_log: Path, path: str) -> int:
    return sum(f'"GET {path} ' in line for line in access_log.read_text().splitlines())


def test_a_rack_installs_through_its_edge_cache_with_one_fetch_per_file_and_the_site_down(
    nginx: str, devpi: DevpiConfig, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0", noise=200_000))
    gamma = upstream.add(WheelSpec("gamma", "1.0", noise=2_000_000))
    delta = upstream.add(WheelSpec("delta", "1.0"))
    upstream.add(WheelSpec("epsilon", "1.0"))
    projects = ["alpha", "gamma", "delta", "epsilon"]
    config = with_proxy(
        make_config(tmp_path, upstream.index_url, devpi, projects), nginx, page_cache_seconds=1
    )
    report, store = sync(config)
    assert report.ok, report.failures
    site_log = config.proxy.workdir / "access.log"
    index_path = f"/{config.devpi.index}/+simple/"

    with entry(config, devpi) as site_nginx:
        site_port = urlsplit(site_nginx).port
        assert site_port is not None
        # The rack's link to the site: every request takes a while to cross it.
        with (
            Relay(site_port, request_delay=0.5) as link,
            edge_cache(link.url, tmp_path / "rack-host") as edge,
        ):
            index = f"{edge}{index_path}"
            health = requests.get(f"{edge}{HEALTH_PATH}", timeout=10)
            assert health.status_code == 200 and health.text.startswith("ok ")

            # pip through the edge; the page's links are relative, so they lead
            # back to the edge, not to the site.
            venv = make_venv(tmp_path / "venv1")
            installed = pip_install(venv, index, "alpha")
            assert installed.returncode == 0, installed.stderr
            first = requests.get(f"{index}alpha/", timeout=10)
            again = requests.get(f"{index}alpha/", timeout=10)
            assert (first.headers["X-Cache-Status"], again.headers["X-Cache-Status"]) == (
                "MISS",
                "HIT",
            )
            beta_url = wheel_url(f"{index}beta/", "beta-1.0")
            assert beta_url.startswith(f"{edge}/")

            # A rack asks for a wheel the edge never fetched, all at once.
            gamma_url = wheel_url(f"{index}gamma/", "gamma-1.0")
            start = threading.Barrier(RACK)

            def fetch(_: int) -> tuple[int, str]:
                start.wait()
                answer = requests.get(gamma_url, timeout=60)
                return answer.status_code, hashlib.sha256(answer.content).hexdigest()

            with ThreadPoolExecutor(RACK) as pool:
                answers = list(pool.map(fetch, range(RACK)))
            assert answers == [(200, gamma.sha256)] * RACK
            assert pip_install(venv, index, "gamma").returncode == 0  # pip's own page

            # Quarantined at the site: the edge's kept 200 gives way to the site's
            # 410 within the page lifetime (the site's own page cache's too).
            delta_url = wheel_url(f"{index}delta/", "delta-1.0")
            assert requests.get(delta_url, timeout=10).status_code == 200
            assert requests.get(delta_url, timeout=10).headers["X-Cache-Status"] == "HIT"
            rule = new_rule("delta", "CVE-2026-0042", "ops@site", blobs=(delta.sha256,))
            add_rules(store, [rule])
            assert offer_manifests(config, store)[1] == []  # the site's devpi purged
            assert within(
                PAGE_SECONDS + 10,
                lambda: requests.get(delta_url, timeout=10).status_code == 410,
            )
            assert "CVE-2026-0042" in requests.get(delta_url, timeout=10).text
            # A kept file past the page lifetime costs the site a 304, not its bytes.
            kept = requests.get(beta_url, timeout=10)
            assert kept.status_code == 200 and kept.headers["X-Cache-Status"] == "REVALIDATED"

            # The site goes away (its link first: nothing answers the edge).
            link.cut()
            gamma_path = urlsplit(gamma_url).path
            assert requests.get(gamma_url, timeout=30).status_code == 200
            # The quarantine the edge learned stands with the site gone.
            assert requests.get(delta_url, timeout=30).status_code == 410

            fresh = make_venv(tmp_path / "venv2")
            offline = pip_install(fresh, index, "alpha", "gamma")
            assert offline.returncode == 0, offline.stderr
            never = pip_install(fresh, index, "epsilon")
            assert never.returncode != 0
            said = requests.get(f"{index}epsilon/", timeout=30)
            assert said.status_code == 502
            assert f"the site {link.url} is unreachable" in said.text
            assert f"{index_path}epsilon/ is not kept here" in said.text
    # The site's nginx, stopped, has written its log: the rack's burst was one fetch.
    assert site_fetches(site_log, gamma_path) == 1
