"""A site follows a centre over HTTP: two real tfmirror processes on loopback (the
centre's `serve`, the site's `follow` and `up`), real devpi on the site, pip in a clean
venv; what a centre serves wrong is refused and the site serves on what it had."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from mirror.core.config import load_config
from mirror.core.credentials import FOLLOW_API_TOKEN_ENV, FOLLOW_TOKEN_ENV
from mirror.core.journal import Journal
from mirror.core.snapshots import snapshot_names
from mirror.core.storage import open_store
from mirror.core.web_server import WebServer
from mirror.devpi.server import DevpiProcess
from mirror.proxy.nginx import entry_point
from testkit.servers import make_venv, pip_install, read_banner
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tests.support.centre_gate import CentreGate
from tests.support.cli import tfmirror
from tests.support.follow import (
    ROOT,
    TOKEN,
    blob_path,
    get_json,
    held,
    make_centre,
    page,
    running,
    runs,
    site_config,
    status,
    wait_until,
)
from tfmirror.app import create_app


@pytest.fixture
def centre_config(
    tmp_path: Path,
    upstream: Upstream,
    saved_models: tuple[Path, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """A centre that synced alpha 1.0 (+ beta) and imported one model, asking for a read
    token; the sites the test starts send it (both from the environment, as secrets are)."""
    monkeypatch.setenv(FOLLOW_API_TOKEN_ENV, TOKEN)
    monkeypatch.setenv(FOLLOW_TOKEN_ENV, TOKEN)
    models, _ = saved_models
    return make_centre(tmp_path / "centre", upstream, models, extra="\n[proxy]\nenabled = false\n")


@pytest.fixture
def centre(centre_config: Path) -> Iterator[tuple[Path, str]]:
    """That centre, its front served by `tfmirror serve` in a process of its own."""
    config = centre_config
    url = load_config(str(config)).web.base_url
    with running(config, "serve"):
        assert wait_until(lambda: status(f"{url}/healthz") == 200), "the centre never served"
        yield config, url


def snapshots(config: Path) -> list[str]:
    return snapshot_names(open_store(load_config(str(config)).storage))


def test_a_site_follows_the_centre_verifies_every_byte_and_takes_its_takedowns(
    centre: tuple[Path, str], upstream: Upstream, tmp_path: Path
) -> None:
    centre_config, centre_url = centre
    site = site_config(tmp_path, centre_url)
    snapped = tfmirror(centre_config, "snapshot", "create", "held-1")
    assert snapped.returncode == 0, snapped.stderr

    pulled = tfmirror(site, "follow")
    assert pulled.returncode == 0, pulled.stderr
    assert held(site) == held(centre_config)  # the closure and the model, byte for byte
    assert snapshots(site) == ["held-1"]
    assert any(k.startswith("manifests/hub/") for k in held(site))
    verified = tfmirror(site, "history", "--outer", "--verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    own = tfmirror(site, "history", "--json")
    assert own.returncode == 0 and "followed" in own.stdout, own.stdout + own.stderr

    # Nothing changed at the centre: a 304, no blob fetched, nothing written.
    before = held(site)
    again = tfmirror(site, "follow")
    assert again.returncode == 0, again.stderr
    assert "has not moved" in again.stdout
    assert runs(site)[-1]["counts"].get("new_blobs", 0) == 0
    assert held(site) == before

    # A token the centre does not know gets nothing.
    stranger = site_config(tmp_path / "other", centre_url)
    with pytest.MonkeyPatch.context() as env:
        env.setenv(FOLLOW_TOKEN_ENV, "wrong")
        refused = tfmirror(stranger, "follow")
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr, refused.stderr

    # pip installs at the site from what the pull brought, in a clean venv.
    config = load_config(str(site))
    venv = make_venv(tmp_path / "venv")
    with (
        WebServer(create_app(config), config.web.host, config.web.port),
        DevpiProcess(config.devpi),
    ):
        pip = pip_install(venv, entry_point(config, proxied=False).index_url, "alpha")
        assert pip.returncode == 0, pip.stderr
        old_name = "alpha-1.0-py3-none-any.whl"
        old_sha = upstream.files[old_name].sha256
        file_url = f"{config.web.base_url}/files/{old_sha}/{old_name}"
        assert status(file_url) == 200

        # A byte flipped in a centre blob: refused, named; the site serves what it had.
        upstream.add(WheelSpec("alpha", "2.0", requires=["beta"]))
        assert tfmirror(centre_config, "sync", "pypi").returncode == 0
        new_name = "alpha-2.0-py3-none-any.whl"
        new = upstream.files[new_name]
        path = blob_path(centre_config, new.sha256)
        good = path.read_bytes()
        path.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
        flipped = tfmirror(site, "follow")
        assert flipped.returncode == 1, flipped.stdout
        assert new.sha256 in flipped.stderr and "sha256 mismatch" in flipped.stderr
        assert held(site) == before
        assert runs(site)[-1]["outcome"] == "failed"
        assert status(file_url) == 200
        assert open_store(config.storage).blob_size(new.sha256) is None

        # Put right, and a quarantine at the centre: the next pull brings both.
        path.write_bytes(good)
        quarantined = tfmirror(centre_config, "quarantine", "add", "alpha==1.0", "--reason", "CVE")
        assert quarantined.returncode == 0, quarantined.stderr
        dropped = tfmirror(centre_config, "snapshot", "delete", "held-1")  # and a deletion
        assert dropped.returncode == 0, dropped.stderr
        caught_up = tfmirror(site, "follow")
        assert caught_up.returncode == 0, caught_up.stderr
        assert "quarantine rules changed" in caught_up.stdout
        assert "snapshots deleted as at the centre: held-1" in caught_up.stdout
        assert snapshots(site) == []
        assert held(site) == held(centre_config)
        assert status(file_url) == 410
        new_url = f"{config.web.base_url}/files/{new.sha256}/{new_name}"
        assert status(new_url) == 200


def test_a_site_defining_its_own_requirements_is_a_config_error(tmp_path: Path) -> None:
    site = site_config(tmp_path, "http://127.0.0.1:9")
    site.write_text(site.read_text() + '[pypi]\nrequirements = ["alpha"]\n')
    done = tfmirror(site, "follow")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "[follow]" in done.stderr, done.stderr


def test_up_on_a_site_runs_the_follow_loop_and_a_takedown_at_the_centre_reaches_it(
    centre: tuple[Path, str], upstream: Upstream, tmp_path: Path
) -> None:
    centre_config, centre_url = centre
    site = site_config(tmp_path, centre_url, interval=1)
    config = load_config(str(site))
    with running(site, "up") as up:
        banner = read_banner(up)
        assert "follow sync at start: ok" in banner, banner
        name = "alpha-1.0-py3-none-any.whl"
        file_url = f"{config.web.base_url}/files/{upstream.files[name].sha256}/{name}"
        assert status(file_url) == 200
        quarantined = tfmirror(centre_config, "quarantine", "add", "alpha", "--reason", "CVE")
        assert quarantined.returncode == 0, quarantined.stderr
        # The loop pulls every second; bounded, and no timing asserted beyond that.
        assert wait_until(lambda: status(file_url) == 410, 120)
    assert up.returncode == 0
    assert held(site) == held(centre_config)
    verified = tfmirror(site, "history", "--outer", "--verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_region_and_its_site_serve_through_a_centre_outage_and_catch_up(
    centre_config: Path, upstream: Upstream, tmp_path: Path
) -> None:
    """centre -> region (`up`, pulling every second) -> site (`follow`): the chain holds
    the centre's closure; the centre stopped, the region says so in one line, serves
    what it holds and feeds its own site; the centre back, the region catches up."""
    centre_url = load_config(str(centre_config)).web.base_url
    quick = 'backoff_max = 1\nname = "region"\n'
    region = site_config(tmp_path / "region", centre_url, interval=1, more=quick)
    region_url = load_config(str(region)).web.base_url
    leaf = site_config(tmp_path / "leaf", region_url, more='name = "leaf"\n')
    name = "alpha-1.0-py3-none-any.whl"
    file_url = f"{region_url}/files/{upstream.files[name].sha256}/{name}"
    centre = ExitStack()
    centre.enter_context(running(centre_config, "serve"))
    assert wait_until(lambda: status(f"{centre_url}/healthz") == 200), "the centre never served"
    with centre, running(region, "up") as up:
        banner = read_banner(up)
        assert "follow sync at start: ok" in banner, banner
        assert status(file_url) == 200
        pulled = tfmirror(leaf, "follow")
        assert pulled.returncode == 0, pulled.stderr
        assert held(leaf) == held(centre_config)
        verified = tfmirror(leaf, "history", "--outer", "--verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        # Each lists its followers, by the name each pull gave.
        assert wait_until(
            lambda: (
                "region"
                in {f["name"] for f in get_json(f"{centre_url}/api/status").get("followers", [])}
            ),
            30,
        )
        followers = get_json(f"{region_url}/api/status")["followers"]
        assert [(f["name"], f["entries_behind"]) for f in followers] == [("leaf", 0)]

        # The centre stops: the region says so, and serves on what it holds.
        centre.close()
        notice = f"following {centre_url}: centre unreachable since "

        def says_down() -> bool:
            doc = get_json(f"{region_url}/api/status").get("follow") or {}
            return bool(doc.get("unreachable")) and str(doc.get("notice")).startswith(notice)

        assert wait_until(says_down, 120)
        assert notice in page(f"{region_url}/")
        assert "serving what was pulled at " in page(f"{region_url}/")
        assert status(file_url) == 200
        metrics = page(f"{region_url}/metrics")
        assert f'tfmirror_follow_centre_reachable{{centre="{centre_url}"}} 0.0' in metrics
        again = tfmirror(leaf, "follow")  # the region still feeds its own site
        assert again.returncode == 0, again.stderr

        # The centre syncs alpha 2.0 while no one reaches it, then comes back.
        upstream.add(WheelSpec("alpha", "2.0", requires=["beta"]))
        assert tfmirror(centre_config, "sync", "pypi").returncode == 0
        new_name = "alpha-2.0-py3-none-any.whl"
        new_url = f"{region_url}/files/{upstream.files[new_name].sha256}/{new_name}"
        assert status(new_url) == 404
        with running(centre_config, "serve"):
            assert wait_until(lambda: status(new_url) == 200, 120), "the region never caught up"
            assert wait_until(
                lambda: (
                    (get_json(f"{region_url}/api/status").get("follow") or {}).get("notice") == ""
                ),
                30,
            )
            assert held(region) == held(centre_config)
            caught_up = tfmirror(leaf, "follow")
            assert caught_up.returncode == 0, caught_up.stderr
            assert held(leaf) == held(centre_config)
    assert up.returncode == 0


def followed_heads(config: Path) -> list[int]:
    """The centre head of each pull the site's journal records as committed."""
    journal = Journal(open_store(load_config(str(config)).storage))
    return [
        int(change["centre_head"])
        for entry in journal.entries()
        for change in entry.doc["changes"]
        if change.get("event") == "followed"
    ]


def test_two_replicas_of_a_site_share_its_store_and_lease_and_one_pulls(
    centre: tuple[Path, str], upstream: Upstream, tmp_path: Path
) -> None:
    """Two `up` on one site store (each its own front and devpi), both pulling every
    second through a gate that counts the centre's blob answers and slows them, so a
    pull is still streaming when the other replica's turn comes: each commit at the
    centre is pulled once (one `followed` entry, each blob asked for once), and both
    replicas serve it."""
    _, centre_url = centre
    shared = tmp_path / "site-store"
    with CentreGate(centre_url) as gate, ExitStack() as replicas:
        gate.pace = 400_000  # bytes a second: the new wheel streams for ~4 s
        configs = []
        for name in ("replica-a", "replica-b"):
            config = site_config(tmp_path / name, gate.url, interval=1)
            text = config.read_text().replace('path = "data"', f'path = "{shared}"')
            # Each replica its own devpi, beside its config; the store is the shared one.
            text = text.replace('index = "fleet/pypi"', 'index = "fleet/pypi"\nserverdir = "devpi"')
            config.write_text(text)
            configs.append(config)
        ups = [replicas.enter_context(running(config, "up")) for config in configs]
        for up in ups:
            banner = read_banner(up)
            assert "follow sync at start: " in banner, banner
        fronts = [load_config(str(config)).web.base_url for config in configs]
        old, new = "alpha-1.0-py3-none-any.whl", "alpha-2.0-py3-none-any.whl"
        for front in fronts:
            old_url = f"{front}/files/{upstream.files[old].sha256}/{old}"
            assert wait_until(lambda url=old_url: status(url) == 200, 60)

        upstream.add(WheelSpec("alpha", "2.0", requires=["beta"], noise=1_500_000))
        synced = tfmirror(centre[0], "sync", "pypi")
        assert synced.returncode == 0, synced.stderr
        for front in fronts:
            new_url = f"{front}/files/{upstream.files[new].sha256}/{new}"
            assert wait_until(lambda url=new_url: status(url) == 200, 120), new_url
    assert [up.returncode for up in ups] == [0, 0]

    # Two commits at the centre (the first closure, then alpha 2.0): two pulls between
    # two replicas, no blob asked for twice, no pull refused as a second one's commit.
    heads = followed_heads(configs[0])
    assert len(heads) == 2 and len(set(heads)) == 2, heads
    assert upstream.files[new].sha256 in gate.asked
    assert set(gate.asked.values()) == {1} and gate.delivered == gate.asked, gate.asked
    outcomes = {run["outcome"] for run in runs(configs[0])}
    assert outcomes == {"ok"}, outcomes


def test_a_site_killed_mid_pull_resumes_and_fetches_no_stored_blob_again(
    centre: tuple[Path, str], tmp_path: Path
) -> None:
    """`tfmirror follow` SIGKILLed while blobs stream (a gate slows the centre's blob
    answers): the next pull asks only for the blobs not yet stored whole, and commits."""
    centre_config, centre_url = centre
    with CentreGate(centre_url) as gate:
        site = site_config(tmp_path, gate.url)
        gate.pace = 100_000  # bytes a second: beta's 200 kB stream for ~2 s
        cmd = [sys.executable, "-m", "tfmirror.cli", "--config", str(site), "follow"]
        first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert wait_until(lambda: len(gate.asked) > len(gate.delivered) > 0, 120)
        finally:
            first.kill()
            first.communicate(timeout=30)
        stored = set(gate.delivered)
        cut = set(gate.asked) - stored
        assert cut and held(site) == {}  # killed mid-stream, nothing committed

        gate.pace = None
        resumed = tfmirror(site, "follow")  # the dead process's lease holds nothing up
        assert resumed.returncode == 0, resumed.stderr
        assert held(site) == held(centre_config)
    assert all(gate.asked[sha] == 1 for sha in stored), gate.asked
    assert set(gate.delivered.values()) == {1}, gate.delivered  # nothing crossed twice
