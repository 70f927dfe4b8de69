"""The `tfmirror` command as an operator runs it: its own devpi, real processes, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mirror.core.config import load_config
from mirror.devpi.server import DevpiProcess
from testkit.mirror_env import operator_config
from testkit.servers import free_port, make_venv, pip_install, read_banner
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec


def tfmirror(config: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tfmirror.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def own_devpi_config(tmp_path: Path, upstream: Upstream) -> Path:
    """A config like an operator's: tfmirror starts and owns its devpi-server."""
    upstream.add(WheelSpec("alpha", "1.0", requires=["beta"]))
    upstream.add(WheelSpec("beta", "1.0"))
    return operator_config(tmp_path, upstream.index_url, ["alpha"])


@pytest.fixture
def slow_proof_config(tmp_path: Path, upstream: Upstream) -> Path:
    """A mirror whose package takes a minute to import: verify's proof is surely still
    running when a test stops it (on a fast machine the rest of a proof takes a second)."""
    upstream.add(WheelSpec("sloth", "1.0", source="import time\ntime.sleep(60)\n"))
    return operator_config(tmp_path, upstream.index_url, ["sloth"])


def test_sync_lock_pip_conf_and_failure_exit_codes(
    own_devpi_config: Path, upstream: Upstream, tmp_path: Path
) -> None:
    proc = tfmirror(own_devpi_config, "sync", "pypi")
    assert proc.returncode == 0, proc.stderr
    assert "pypi sync: 2 new, 0 skipped, 0 failed" in proc.stdout
    data = tmp_path / "data"
    assert (data / "manifests/pypi/default/py3.11-manylinux_2_28_x86_64.json").is_file()
    creds = data / "devpi" / "tfmirror-credentials.json"
    assert creds.stat().st_mode & 0o077 == 0

    lock = tfmirror(own_devpi_config, "lock")
    assert lock.returncode == 0
    assert "alpha==1.0 \\\n    --hash=sha256:" in lock.stdout
    conf = tfmirror(own_devpi_config, "pip-conf")
    assert "/fleet/pypi/+simple/" in conf.stdout
    targets = tfmirror(own_devpi_config, "targets")
    assert "py3.11-manylinux_2_28_x86_64\t2 files" in targets.stdout
    bad_target = tfmirror(own_devpi_config, "lock", "--target", "py3.9-win32")
    assert bad_target.returncode == 2 and "not a target of environment default" in bad_target.stderr

    upstream.add(WheelSpec("alpha", "2.0"), "corrupt")
    failed = tfmirror(own_devpi_config, "sync", "pypi")
    assert failed.returncode == 1
    assert "FAILED alpha-2.0-py3-none-any.whl: sha256 mismatch" in failed.stderr
    assert "0 new, 0 skipped, 2 failed" in failed.stdout
    # Still the previous, verified closure.
    assert "alpha==1.0" in tfmirror(own_devpi_config, "lock").stdout


def test_a_sync_stops_its_own_devpi_only_after_devpi_kept_every_file(
    own_devpi_config: Path, upstream: Upstream, tmp_path: Path
) -> None:
    # devpi streams a pulled file before it copies it into place and commits it; a big
    # wheel makes that window wide enough that stopping devpi early would lose it.
    upstream.add(WheelSpec("beta", "2.0", noise=150_000_000))
    assert tfmirror(own_devpi_config, "sync", "pypi").returncode == 0

    # devpi alone, the web front down: only what devpi itself holds can be installed.
    devpi = load_config(str(own_devpi_config)).devpi
    with DevpiProcess(devpi):
        venv = make_venv(tmp_path / "venv")
        pip = pip_install(venv, devpi.index_url, "alpha")
    assert pip.returncode == 0, pip.stderr


def run_up(config: Path, tmp_path: Path, nginx: str) -> tuple[str, str]:
    """`tfmirror up` with [proxy] nginx = `nginx`: pip installs from the index its banner
    names; Ctrl-C stops it and every child. Returns (banner, stderr)."""
    config.write_text(config.read_text() + f'\n[proxy]\nnginx = "{nginx}"\nport = {free_port()}\n')
    up = subprocess.Popen(
        [sys.executable, "-m", "tfmirror.cli", "--config", str(config), "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        text = read_banner(up)
        assert "pypi sync at start: ok" in text, text
        index_url = next(
            ln.split("=", 1)[1].strip() for ln in text.splitlines() if ln.startswith("index-url")
        )
        venv = make_venv(tmp_path / "venv")
        pip = pip_install(venv, index_url, "alpha")
        assert pip.returncode == 0, pip.stderr
    finally:
        up.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        code = up.wait(timeout=120)
        stopped_in = time.monotonic() - interrupted
        assert up.stderr is not None
        stderr = up.stderr.read()
    assert code == 0, stderr
    # Ctrl-C does not wait for the overdue verify and gc queued at start (a whole verify
    # proves an install in a fresh venv: minutes; the bound is loose for a shared machine).
    assert stopped_in < 30, f"up took {stopped_in:.1f} s to stop"
    # Ctrl-C also stopped the devpi-server and the nginx that `up` started.
    for child in (tmp_path / "data" / "devpi", tmp_path / "data" / "proxy"):
        ps = subprocess.run(["pgrep", "-f", str(child)], capture_output=True, text=True)
        assert ps.stdout.strip() == "", child
    return text, stderr


def test_up_serves_the_fleet_through_nginx_and_stops_cleanly_on_ctrl_c(
    own_devpi_config: Path, tmp_path: Path, nginx: str
) -> None:
    banner, _ = run_up(own_devpi_config, tmp_path, nginx)
    port = load_config(str(own_devpi_config)).proxy.port
    entry = f"http://127.0.0.1:{port}"
    assert f"index-url = {entry}/fleet/pypi/+simple/" in banner
    assert f"TF Hub models: {entry}/hub/" in banner
    assert f"entry point: {entry}/   (nginx in front of devpi and the web front" in banner


def test_up_without_nginx_says_how_to_get_it_and_serves_directly(
    own_devpi_config: Path, tmp_path: Path
) -> None:
    banner, stderr = run_up(own_devpi_config, tmp_path, str(tmp_path / "no" / "nginx"))
    config = load_config(str(own_devpi_config))
    # The fronts' pages, whose file links the front sends on to devpi.
    assert f"index-url = {config.web.base_url}/fleet/pypi/+simple/" in banner
    hint = [ln for ln in stderr.splitlines() if "nginx" in ln]
    assert len(hint) == 1 and "apt-get install nginx-light" in hint[0], stderr


def test_up_prints_its_banner_plain_and_says_what_stopped_it(
    own_devpi_config: Path, tmp_path: Path
) -> None:
    # Before: the syncs' log lines ("... INFO tfmirror.pypi: pypi sync: ...") came
    # inside the banner on a terminal, and a SIGTERM ended `up` without a word.
    own_devpi_config.write_text(own_devpi_config.read_text() + "\n[proxy]\nenabled = false\n")
    up = subprocess.Popen(
        [sys.executable, "-m", "tfmirror.cli", "--config", str(own_devpi_config), "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream, as a terminal shows both
        text=True,
    )
    try:
        banner = read_banner(up)
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
    # Through the same reader as the banner: what its readline() buffered past the banner
    # (the sync's log lines, often) is there, and communicate() would read past it.
    assert up.stdout is not None
    rest = up.stdout.read()
    assert banner.startswith("pypi sync at start: ok\n"), banner
    assert "entry point:" in banner, banner
    logged = [ln for ln in banner.splitlines() if " INFO " in ln or " WARNING " in ln]
    assert logged == [], banner
    assert " INFO tfmirror.pypi: pypi sync: 2 new" in rest  # the log, after the banner
    assert rest.strip().splitlines()[-1].startswith("tfmirror up: stopped (SIGTERM)"), rest
    assert up.returncode == 0, rest[-2000:]


def test_two_syncs_started_together_download_each_file_once(
    own_devpi_config: Path, upstream: Upstream
) -> None:
    upstream.add(WheelSpec("gamma", "1.0", noise=2_000_000))
    text = own_devpi_config.read_text().replace('["alpha"]', '["alpha", "gamma"]')
    own_devpi_config.write_text(text)
    cmd = [sys.executable, "-m", "tfmirror.cli", "--config", str(own_devpi_config)]
    syncs = [
        subprocess.Popen([*cmd, "sync", "pypi", "--wait"], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [proc.communicate(timeout=300)[0] for proc in syncs]
    assert [proc.returncode for proc in syncs] == [0, 0], outs
    # One ran, the other waited for it and then found everything mirrored.
    assert sorted(o.split("pypi sync: ")[1].split(",")[0] for o in outs) == ["0 new", "3 new"]
    assert set(upstream.hits.values()) == {1}, upstream.hits


def test_a_cli_job_while_another_holds_it_says_who_and_exits_1(
    own_devpi_config: Path, tmp_path: Path
) -> None:
    from mirror.core.lease import FileLock

    lease = FileLock((tmp_path / "data").resolve()).acquire("gc")
    assert lease is not None
    busy = tfmirror(own_devpi_config, "gc")
    assert busy.returncode == 1
    line = busy.stderr.strip()
    assert line.startswith("tfmirror: gc is running elsewhere (held by "), line
    assert (
        f":{os.getpid()}:" in line
        and " since 20" in line
        and line.endswith("--wait to run after it")
    )
    waiting = subprocess.Popen(
        [sys.executable, "-m", "tfmirror.cli", "--config", str(own_devpi_config), "gc", "--wait"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(2)
    assert waiting.poll() is None, "gc --wait did not wait"
    lease.release()
    out, _ = waiting.communicate(timeout=60)
    assert waiting.returncode == 0 and out.startswith("gc: removed 0")


def test_a_sync_ends_when_its_work_ends_even_with_a_stalled_guess_in_flight(
    own_devpi_config: Path, upstream: Upstream
) -> None:
    # The speculative prefetch guesses the newest alpha, whose download stalls; the resolver
    # wants alpha 1.0 (beta>=9 does not exist). The let-go guess must not keep the
    # process alive.
    upstream.add(WheelSpec("alpha", "3.0", requires=["beta>=9"]), "stall")
    own_devpi_config.write_text(own_devpi_config.read_text().replace("timeout = 2", "timeout = 30"))
    sync = subprocess.Popen(
        [sys.executable, "-m", "tfmirror.cli", "--config", str(own_devpi_config), "sync", "pypi"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sync.stdout is not None
    summary = sync.stdout.readline()
    while summary and not summary.startswith("pypi sync:"):
        summary = sync.stdout.readline()
    done_at = time.monotonic()
    code = sync.wait(timeout=120)
    assert code == 0 and summary.startswith("pypi sync: 2 new")
    assert time.monotonic() - done_at < 5, "the process outlived its sync"


def test_ctrl_c_in_a_sync_says_so_and_leaves_no_partial_download(
    upstream: Upstream, tmp_path: Path
) -> None:
    # Before: nothing but ^C, and the half-written blob stayed under data/tmp.
    upstream.add(WheelSpec("heavy", "1.0", noise=2_000_000), behaviour="hang")
    config = operator_config(tmp_path, upstream.index_url, ["heavy"])
    config.write_text(config.read_text().replace("timeout = 2\n", "timeout = 30\n"))
    command = [sys.executable, "-m", "tfmirror.cli", "--config", str(config), "sync", "pypi"]
    proc = subprocess.Popen(
        [*command, "--no-devpi"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    tmp = tmp_path / "data" / "tmp"
    deadline = time.monotonic() + 60
    while not list(tmp.glob("blob-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp.glob("blob-*")), "the download never started"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1].startswith("tfmirror: interrupted; nothing half-done")
    assert list(tmp.glob("blob-*")) == []


def test_a_stop_during_verify_cleans_up_its_venvs_and_sockets(
    slow_proof_config: Path, tmp_path: Path
) -> None:
    # Before: SIGTERM left /tmp/tfmirror-airgap-* (a 26 MB venv) and a bridge socket.
    assert tfmirror(slow_proof_config, "sync", "pypi").returncode == 0
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    command = [sys.executable, "-m", "tfmirror.cli", "--config", str(slow_proof_config), "verify"]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 120
    while not list(scratch.glob("tfmirror-airgap-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(scratch.glob("tfmirror-airgap-*")), "verify never started its proof"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("tfmirror: interrupted"), err[-2000:]
    assert [p.name for p in scratch.iterdir() if p.name.startswith("tfmirror-")] == []


def test_up_stops_within_seconds_of_sigterm_during_its_first_sync(
    upstream: Upstream, tmp_path: Path
) -> None:
    # Before: the first sync ran on the main thread and `up` heard the stop only after
    # it (here, a download that hangs for a minute); `docker stop` then SIGKILLs it.
    upstream.add(WheelSpec("heavy", "1.0", noise=2_000_000), behaviour="hang")
    config = operator_config(tmp_path, upstream.index_url, ["heavy"])
    config.write_text(
        config.read_text().replace("timeout = 2\n", "timeout = 30\n")
        + "\n[proxy]\nenabled = false\n"
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "tfmirror.cli", "--config", str(config), "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    tmp = tmp_path / "data" / "tmp"
    deadline = time.monotonic() + 120
    while not list(tmp.glob("blob-*")) and time.monotonic() < deadline and up.poll() is None:
        time.sleep(0.05)
    assert list(tmp.glob("blob-*")), "the first sync's download never started"
    up.send_signal(signal.SIGTERM)
    stopping = time.monotonic()
    _, err = up.communicate(timeout=60)
    # Under the download's 30 s timeout: it did not wait for the hang (loose for a
    # machine shared with other work).
    assert time.monotonic() - stopping < 25, err[-2000:]
    assert "tfmirror up: stopped (SIGTERM) while pypi ran" in err, err[-2000:]
    assert "retry" not in err, err[-2000:]
    record = json.loads((tmp_path / "data" / "runs" / "pypi" / "latest.json").read_text())
    assert record["outcome"] == "interrupted" and record["trigger"] == "startup", record
    assert record["errors"][0]["reason"].startswith("interrupted by SIGTERM during download")
    assert list(tmp.glob("blob-*")) == []
    ps = subprocess.run(["pgrep", "-f", str(tmp_path / "data" / "devpi")], capture_output=True)
    assert ps.stdout.strip() == b"", "devpi outlived up"


def test_cli_sync_with_devpi_unreachable_and_cli_gc_leave_run_records(
    upstream: Upstream, tmp_path: Path
) -> None:
    # Before, the CLI wired these jobs itself: neither left a record the page could show.
    upstream.add(WheelSpec("alpha", "1.0"))
    config = tmp_path / "tfmirror.toml"
    config.write_text(f"""
[storage]
path = "data"
[devpi]
url = "http://127.0.0.1:{free_port()}"
serverdir = ""
[pypi]
upstream = "{upstream.index_url}"
requirements = ["alpha"]
build_backends = []
""")
    sync = tfmirror(config, "sync", "pypi")
    assert sync.returncode == 1 and "devpi" in sync.stderr
    runs = tmp_path / "data" / "runs"
    record = json.loads((runs / "pypi" / "latest.json").read_text())
    assert record["outcome"] == "failed" and record["errors"][0]["name"] == "devpi"
    assert tfmirror(config, "gc").returncode == 0
    assert json.loads((runs / "gc" / "latest.json").read_text())["outcome"] == "ok"
    assert tfmirror(config, "gc", "--dry-run").returncode == 0
    assert len(list((runs / "gc").glob("2*.json"))) == 1, "a dry run only looks"


def test_ctrl_c_at_the_terminal_while_up_proves_an_install_records_it_interrupted_and_cleans_up(
    slow_proof_config: Path, tmp_path: Path
) -> None:
    # Before: the terminal's Ctrl-C reached verify's pip too, so the run was recorded as
    # failed ("Operation cancelled by user"), and its venv folder stayed in /tmp.
    assert tfmirror(slow_proof_config, "sync", "pypi").returncode == 0
    config = slow_proof_config
    config.write_text(config.read_text() + "\n[proxy]\nenabled = false\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    up = subprocess.Popen(
        [sys.executable, "-m", "tfmirror.cli", "--config", str(config), "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(scratch)},
        start_new_session=True,  # its own group, as a terminal's foreground job is
    )
    deadline = time.monotonic() + 120
    while not list(scratch.glob("tfmirror-airgap-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(scratch.glob("tfmirror-airgap-*")), "verify's proof never started"
    os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C at a terminal does
    # It stops without finishing the proof (the record says interrupted, below), within
    # the bound; no finer timing here, on a machine shared with other work.
    up.communicate(timeout=60)
    record = json.loads((tmp_path / "data" / "runs" / "verify" / "latest.json").read_text())
    assert record["outcome"] == "interrupted", record
    assert record["errors"][0]["reason"].startswith("interrupted by SIGINT"), record
    assert [p.name for p in scratch.iterdir() if p.name.startswith("tfmirror-")] == []
