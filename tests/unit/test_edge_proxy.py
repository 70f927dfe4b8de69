"""A rack's edge cache's nginx config (`tfmirror proxy --edge URL`), rendered from the
command line alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mirror.core.config import parse_config
from mirror.core.errors import UsageError
from mirror.proxy.edge import edge_plan_for, megabytes, site_base
from mirror.proxy.nginx import HEALTH_PATH, render
from tests.support.cli import ROOT


def _location(text: str, opening: str) -> str:
    block = text[text.index(opening) :]
    return block[: block.index("}")]


def test_every_answer_is_fresh_for_the_page_lifetime_and_served_stale_with_the_site_down(
    tmp_path: Path,
) -> None:
    config = parse_config({"proxy": {"page_cache_seconds": 7}}, tmp_path)
    plan = edge_plan_for(config, "http://site.example:8000/", port=9000, max_size_mb=200 * 1024)
    text = render(plan)
    assert plan.workdir == (tmp_path / "data" / "edge").resolve()
    assert "listen 127.0.0.1:9000 backlog=4096;" in text
    assert "server site.example:8000;" in text
    server = text[text.index("    server {") :]
    # Pages and files alike: fresh for the site's page lifetime, a removal or a
    # quarantine kept like a file, asked again conditionally, one fetch per new answer
    # however long it takes, the last answer served while the site is down.
    policy = server[: server.index("\n        location ")]
    assert "proxy_cache_valid 200 404 410 7s;" in policy
    assert "proxy_cache_revalidate on;" in policy
    assert "proxy_cache_lock on;" in policy
    assert "proxy_cache_lock_timeout 900s;" in policy and "proxy_cache_lock_age 900s;" in policy
    assert "proxy_cache_use_stale error timeout updating http_500" in policy
    assert "error_page 502 504 @site_unreachable;" in policy
    # Files stay as long as their space allows; pages as long, in a small space.
    assert "keys_zone=tfmirror_edge_files:64m\n" in text
    assert "max_size=204800m inactive=365d" in text
    assert "max_size=512m inactive=365d" in text
    # The site's ten-year max-age on files does not make them fresh here.
    files = _location(server, r"location ~ /\+f/ {")
    assert "proxy_cache tfmirror_edge_files;" in files
    assert 'proxy_cache_key "$uri$is_args$args";' in files  # pip's %2Bf is +f
    assert "proxy_ignore_headers Cache-Control Expires Set-Cookie;" in files
    hub = _location(server, "location ^~ /hub/ {")
    assert "proxy_cache tfmirror_edge_files;" in hub
    pages = _location(server, r"location ~ /\+simple/ {")
    assert 'proxy_cache_key "$uri$is_args$args $http_accept";' in pages
    assert "proxy_cache_background_update on;" in pages
    assert 'proxy_set_header Accept-Encoding "";' in pages
    # Status, API: the site's as they are now. Health: the edge's own, as the entry point's.
    assert "proxy_cache " not in _location(server, "location / {")
    health = _location(server, f"location = {HEALTH_PATH} {{")
    assert f'return 200 "ok {plan.instance}\\n";' in health
    # A descriptor opened before a 410 replaced the kept file would serve the file.
    assert "open_file_cache " not in text


def test_without_a_size_the_files_leave_free_space_on_the_disk(tmp_path: Path) -> None:
    plan = edge_plan_for(parse_config({}, tmp_path), "http://10.0.0.5", cache_dir=tmp_path / "c")
    text = render(plan)
    assert "server 10.0.0.5:80;" in text
    assert "min_free=1024m inactive=365d" in text
    assert "proxy_cache_valid 200 404 410 10s;" in text  # [proxy]'s default page lifetime
    assert plan.workdir == (tmp_path / "c").resolve()


@pytest.mark.parametrize(
    "url",
    [
        "https://site:8000",
        "site:8000",
        "http://site:8000/root/pypi/+simple/",
        "http://user:pw@site:8000",
        "http://site:port",
        "http://",
    ],
)
def test_a_site_url_that_is_not_an_entry_point_is_refused(url: str) -> None:
    with pytest.raises(UsageError, match="http://HOST"):
        site_base(url)


def test_sizes() -> None:
    assert [megabytes(s) for s in ("500m", "50g", "2T")] == [500, 50 * 1024, 2 * 1024 * 1024]
    for bad in ("50", "0g", "5 gb", "-1g"):
        with pytest.raises(UsageError, match="500m, 50g or 2t"):
            megabytes(bad)


def _proxy(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tfmirror.cli", "proxy", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )


def test_the_command_needs_no_config_file_and_bad_edge_options_are_one_line(
    tmp_path: Path,
) -> None:
    printed = _proxy(tmp_path, "--edge", "http://site:8000", "--print-config")
    assert printed.returncode == 0, printed.stderr
    assert "edge cache of http://site:8000" in printed.stdout
    for args, says in (
        (("--edge", "http://site:8000/x"), "give the site mirror's entry point"),
        (("--edge", "http://site:8000", "--max-size", "lots"), "give a size such as"),
        (("--cache-dir", "c"), "add --edge URL"),
    ):
        refused = _proxy(tmp_path, *args, "--print-config")
        assert refused.returncode == 2, refused
        assert says in refused.stderr and len(refused.stderr.splitlines()) == 1
