"""A centre, a region following it and a site following the region, each a real tfmirror
process in a network namespace of its own, joined by emulated WAN links (20 ms each way,
a rate limit; testkit.netns): what the centre commits, quarantines and promotes reaches
both tiers over those links; pip installs inside a site's namespace; a cut link leaves
the region serving and saying so; a byte flipped at the centre is refused over the link;
each tier's journal re-walks the one above it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from mirror.core.config import load_config
from mirror.core.credentials import FOLLOW_API_TOKEN_ENV, FOLLOW_TOKEN_ENV
from mirror.proxy.nginx import entry_point
from testkit.netns import Lab, unavailable
from testkit.servers import clean_pip_env, make_venv, read_banner
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.support.follow import (
    ROOT,
    TOKEN,
    blob_path,
    held,
    make_centre,
    running,
    site_config,
    wait_until,
)

DELAY_MS = 20
RATE_MBIT = 40


@pytest.fixture
def lab() -> Iterator[Lab]:
    why = unavailable()
    if why:
        pytest.skip(why)
    with Lab("tfs") as built:
        yield built
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert built.prefix not in listed, listed  # every namespace the test made is gone


class Tier:
    """One mirror in its namespace: its config, and HTTP asked from inside (curl)."""

    def __init__(self, lab: Lab, ns: str, config: Path) -> None:
        self.lab, self.ns, self.config = lab, ns, config
        self.front = load_config(str(config)).web.base_url

    def tfmirror(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "tfmirror.cli", "--config", str(self.config), *args]
        done: subprocess.CompletedProcess[str] = self.lab.run(
            self.ns, argv, capture_output=True, text=True, cwd=ROOT
        )
        return done

    def get(self, path: str) -> tuple[int, str]:
        done = self.lab.run(
            self.ns,
            ["curl", "-sL", "-m", "10", "-w", "\n%{http_code}", f"{self.front}{path}"],
            capture_output=True,
            text=True,
            errors="replace",  # a file's bytes: only its status is looked at
        )
        body, _, code = done.stdout.rpartition("\n")
        return int(code or 0), body

    def status(self, path: str) -> int:
        return self.get(path)[0]

    def follow(self) -> dict[str, Any]:
        code, body = self.get("/api/status")
        doc: dict[str, Any] = json.loads(body).get("follow") or {} if code == 200 else {}
        return doc

    def pip_install(self, venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """The real pip, run inside this tier's namespace, reading its index only."""
        index = entry_point(load_config(str(self.config)), proxied=False).index_url
        python = make_venv(venv)
        argv = [str(python), "-m", "pip", "install", "--index-url", index, *args]
        env = clean_pip_env() | {"PIP_CONFIG_FILE": "/dev/null"}
        done: subprocess.CompletedProcess[str] = self.lab.run(
            self.ns, argv, capture_output=True, text=True, env=env
        )
        return done


def file_path(upstream: Upstream, name: str) -> str:
    return f"/files/{upstream.files[name].sha256}/{name}"


def test_a_region_and_its_site_follow_the_centre_over_slow_links(
    lab: Lab,
    saved_models: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(FOLLOW_API_TOKEN_ENV, TOKEN)  # every tier asks for it, and sends it
    monkeypatch.setenv(FOLLOW_TOKEN_ENV, TOKEN)
    c, r, s = lab.namespace("c"), lab.namespace("r"), lab.namespace("s")
    centre_addr, _ = lab.link(c, r, DELAY_MS, RATE_MBIT)
    region_addr, _ = lab.link(r, s, DELAY_MS, RATE_MBIT)
    with lab.inside(c):
        upstream = Upstream()  # its socket on the centre's loopback: only the centre syncs
    stack = ExitStack()
    with stack:
        stack.enter_context(upstream)
        models, _ = saved_models

        def at_centre(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
            return Tier(lab, c, config).tfmirror(*args)

        extra = "\n[proxy]\nenabled = false\n"
        centre = Tier(
            lab, c, make_centre(tmp_path / "c", upstream, models, at_centre, extra, "0.0.0.0")
        )
        port = load_config(str(centre.config)).web.port
        quick = 'backoff_max = 1\nname = "region"\n'
        region = Tier(
            lab,
            r,
            site_config(tmp_path / "r", f"http://{centre_addr}:{port}", 1, quick, "0.0.0.0"),
        )
        port = load_config(str(region.config)).web.port
        more = 'backoff_max = 1\nname = "site"\n'
        site = Tier(lab, s, site_config(tmp_path / "s", f"http://{region_addr}:{port}", 1, more))
        assert centre.tfmirror("snapshot", "create", "known-good").returncode == 0

        stack.enter_context(running(centre.config, "serve", lab.argv(c, [])))
        assert wait_until(lambda: centre.status("/healthz") == 200), "the centre never served"
        for tier in (region, site):
            up = stack.enter_context(running(tier.config, "up", lab.argv(tier.ns, [])))
            banner = read_banner(up, 180)
            assert "follow sync at start: ok" in banner, banner
        both = (region, site)
        assert held(region.config) == held(centre.config) == held(site.config)

        # A sync at the centre: both tiers serve it, and pip installs it at each.
        upstream.add(WheelSpec("alpha", "2.0", requires=["beta"]))
        synced = centre.tfmirror("sync", "pypi")
        assert synced.returncode == 0, synced.stderr
        two = file_path(upstream, "alpha-2.0-py3-none-any.whl")
        assert wait_until(lambda: all(t.status(two) == 200 for t in both), 120)
        for tier in both:
            pip = tier.pip_install(tmp_path / f"venv-{tier.ns}", "alpha")
            assert pip.returncode == 0, pip.stderr
            assert "Successfully installed alpha-2.0 beta-1.0" in pip.stdout, pip.stdout

        # A promote at the centre moves both tiers' default index back to alpha 1.0.
        page = "/fleet/pypi/+simple/alpha/"
        assert all("alpha-2.0" in t.get(page)[1] for t in both)
        promoted = centre.tfmirror("snapshot", "promote", "known-good")
        assert promoted.returncode == 0, promoted.stderr

        def held_back(tier: Tier) -> bool:
            code, body = tier.get(page)
            return code == 200 and "alpha-1.0" in body and "alpha-2.0" not in body

        assert wait_until(lambda: all(held_back(t) for t in both), 120)

        # A quarantine at the centre: 410 at both tiers.
        one = file_path(upstream, "alpha-1.0-py3-none-any.whl")
        taken = centre.tfmirror("quarantine", "add", "alpha==1.0", "--reason", "CVE-2026-7")
        assert taken.returncode == 0, taken.stderr
        assert wait_until(lambda: all(t.status(one) == 410 for t in both), 120)

        # The link to the centre cut: the region says so and serves; the site, fed by the
        # region, serves on.
        lab.set_link(c, r, up=False)
        notice = f"following http://{centre_addr}:"

        def says_down() -> bool:
            doc = region.follow()
            return bool(doc.get("unreachable")) and str(doc.get("notice")).startswith(notice)

        assert wait_until(says_down, 60)
        assert "centre unreachable since" in region.follow()["notice"]
        assert all(t.status(two) == 200 for t in both)
        assert site.follow().get("notice") == ""

        # Meanwhile the centre syncs alpha 3.0, and one of its bytes flips on disk: the
        # link back, the region refuses it, names the blob, and serves what it had.
        upstream.add(WheelSpec("alpha", "3.0", requires=["beta"]))
        assert centre.tfmirror("sync", "pypi").returncode == 0
        three_name = "alpha-3.0-py3-none-any.whl"
        three = upstream.files[three_name].sha256
        blob = blob_path(centre.config, three)
        good = blob.read_bytes()
        blob.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
        before = held(region.config)
        lab.set_link(c, r, up=True)

        def refused() -> bool:
            doc = region.follow()
            return "sha256 mismatch" in str(doc.get("error")) and three in str(doc.get("error"))

        assert wait_until(refused, 60), region.follow()
        assert held(region.config) == before
        assert region.status(file_path(upstream, three_name)) == 404
        assert all(t.status(two) == 200 for t in both)

        # Put right at the centre: both tiers catch up at their next pulls.
        blob.write_bytes(good)
        three_path = file_path(upstream, three_name)
        caught_up = wait_until(lambda: all(t.status(three_path) == 200 for t in both), 120)
        assert caught_up, (region.follow(), site.follow(), [t.status(three_path) for t in both])

    # Each tier's journal re-walks the one above it (the site's outer one is the region's,
    # whose `followed` entries name the centre's head).
    for tier in (region, site):
        verified = tier.tfmirror("history", "--outer", "--verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
    region_journal = region.tfmirror("history", "--json")
    assert "followed" in region_journal.stdout and "centre_head_sha256" in region_journal.stdout
