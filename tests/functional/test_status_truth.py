"""What the status page, `tfmirror status` and `tfmirror history` say is true: read as
an operator reads them (the rendered page, the command's output), after real syncs,
snapshots and quarantines made through the CLI."""

from __future__ import annotations

import html
import io
import json
import re
import subprocess
import sys
from pathlib import Path

from mirror.core.config import load_config
from mirror.core.runs import VERIFY_STATE, RunRecord, utcnow
from mirror.core.storage import LocalStore, open_store
from mirror.pypi.lag import LAG_STATE
from mirror.pypi.sync import PypiSync
from testkit.mirror_env import operator_config
from testkit.upstream import Upstream
from testkit.wheels import WheelSpec
from tfmirror.app import create_app
from tfmirror.progress import TerminalProgress
from verify.airgap import TargetProof
from verify.run import VerifyReport
from verify.scrub import ScrubReport


def tfmirror(
    config: Path | None, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    where = ["--config", str(config)] if config else []
    return subprocess.run(
        [sys.executable, "-m", "tfmirror.cli", *where, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def two_environments(tmp: Path, upstream_index: str) -> Path:
    """One environment held on TensorFlow 2.20, one on 2.18; both Python 3.11."""
    pins = {"new": ["tensorflow==2.20.*"], "old": ["tensorflow==2.18.*"]}
    return operator_config(tmp, upstream_index, [], environments=pins)


def text_of(page: str) -> str:
    """The page as a reader sees it: tags gone, entities decoded, spaces squeezed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def rows(page: str, table: str) -> list[str]:
    body = page.split(f'<table id="{table}"', 1)[1].split("</table>", 1)[0]
    return [text_of(row.split(">", 1)[1]).strip() for row in body.split("<tr")[2:]]


def test_lag_compares_each_environment_with_what_its_own_pin_allows(
    upstream: Upstream, tmp_path: Path
) -> None:
    # Before: one "newest" per project for every environment, and what any environment
    # mirrored: the 2.20 environment read "2.18.1, 2.20.0 | 2.18.1 ... up to date".
    for version in ("2.18.1", "2.20.0", "2.21.0"):
        upstream.add(WheelSpec("tensorflow", version))
    path = two_environments(tmp_path, upstream.index_url)
    synced = tfmirror(path, "sync", "pypi", "--no-devpi")
    assert synced.returncode == 0, synced.stderr

    config = load_config(str(path))
    page = create_app(config).test_client().get("/").get_data(as_text=True)
    lag = rows(page, "lag")
    assert lag == [
        "new tensorflow==2.20.* 2.20.0 2.20.0 (2.21.0 is outside the pin or the targets' "
        "Pythons) up to date",
        "old tensorflow==2.18.* 2.18.1 2.18.1 (2.21.0 is outside the pin or the targets' "
        "Pythons) up to date",
    ], lag
    status = tfmirror(path, "status").stdout
    outside = "2.21.0 is outside the pin or the targets' Pythons"
    assert (
        f"lag tensorflow==2.20.* [new]: mirrored 2.20.0, upstream 2.20.0 (up to date; {outside})"
        in status
    )
    assert (
        f"lag tensorflow==2.18.* [old]: mirrored 2.18.1, upstream 2.18.1 (up to date; {outside})"
        in status
    )

    # A release the 2.20 environment could take, held back by its cooldown: it alone
    # is behind.
    upstream.add(WheelSpec("tensorflow", "2.20.1"), uploaded=utcnow())
    text = path.read_text().replace(
        'requirements = ["tensorflow==2.20.*"]',
        'requirements = ["tensorflow==2.20.*"]\nmin_age = "7d"',
    )
    path.write_text(text)
    synced = tfmirror(path, "sync", "pypi", "--no-devpi")
    assert synced.returncode == 0, synced.stderr
    page = create_app(load_config(str(path))).test_client().get("/").get_data(as_text=True)
    lag = rows(page, "lag")
    assert lag[0].startswith("new tensorflow==2.20.* 2.20.0 2.20.1") and lag[0].endswith("behind")
    assert lag[1].endswith("up to date"), lag


def test_a_lag_record_of_the_previous_release_reads_as_not_known_yet(tmp_path: Path) -> None:
    # Its one number per project could belong to another environment's pin.
    path = two_environments(tmp_path, "http://127.0.0.1:9/simple/")
    config = load_config(str(path))
    store = open_store(config.storage)
    store.put(LAG_STATE, json.dumps({"newest": {"tensorflow": "2.18.1"}}).encode())
    page = create_app(config, store).test_client().get("/").get_data(as_text=True)
    assert rows(page, "lag") == [
        "new tensorflow==2.20.* - unknown not known yet",
        "old tensorflow==2.18.* - unknown not known yet",
    ]
    assert "upstream ? (not known yet)" in tfmirror(path, "status").stdout


def test_a_verify_that_never_finished_is_unknown_not_healthy(tmp_path: Path) -> None:
    # Before: "all jobs ok" and "healthy": true on a mirror nothing had ever verified.
    path = two_environments(tmp_path, "http://127.0.0.1:9/simple/")
    config = load_config(str(path))
    store = open_store(config.storage)
    for job in ("pypi", "hub"):
        RunRecord.begin(job, "schedule").finish(store, True, {}, 0, [])
    client = create_app(config, store).test_client()
    api = client.get("/api/status").get_json()
    assert api["healthy"] is False and api["health"] == "unknown", api["health"]
    assert api["unknown_jobs"] == ["verify"] and api["failing_jobs"] == []
    heading = text_of(client.get("/").get_data(as_text=True).split("</h1>", 1)[0])
    assert "unknown: verify has never finished" in heading and "all jobs ok" not in heading
    status = tfmirror(path, "status")
    assert status.returncode == 1
    assert status.stdout.startswith("tfmirror: UNKNOWN: verify has never finished"), status.stdout

    RunRecord.begin("verify", "schedule").finish(store, True, {}, 0, [])
    client = create_app(config, store).test_client()
    api = client.get("/api/status").get_json()
    assert api["healthy"] is True and api["health"] == "ok"
    assert tfmirror(path, "status").returncode == 0


def test_recent_changes_and_history_name_what_each_change_is_about(
    upstream: Upstream, tmp_path: Path
) -> None:
    # Before: "snapshot created:" (and promoted, deleted) with nothing after the colon,
    # "requirements changed:" with no before and after, "quarantined: tensorflow" with
    # no rule and no reason.
    upstream.add(WheelSpec("tensorflow", "2.18.0"))
    upstream.add(WheelSpec("tensorflow", "2.20.0"))
    path = two_environments(tmp_path, upstream.index_url)
    assert tfmirror(path, "sync", "pypi", "--no-devpi").returncode == 0
    text = path.read_text().replace('["tensorflow==2.18.*"]', '["tensorflow==2.18.0"]')
    path.write_text(text)
    assert tfmirror(path, "sync", "pypi", "--no-devpi").returncode == 0
    for args in (
        ("snapshot", "create", "s1"),
        ("snapshot", "promote", "s1"),
        ("snapshot", "promote", "--live"),
        ("snapshot", "delete", "s1"),
        ("quarantine", "add", "tensorflow==2.18.0", "--reason", "CVE-2026-1"),
        ("quarantine", "add", "tensorflow-2.20.0-py3-none-any.whl", "--reason", "bad build"),
    ):
        done = tfmirror(path, *args)
        assert done.returncode == 0, (args, done.stderr)

    page = create_app(load_config(str(path))).test_client().get("/").get_data(as_text=True)
    changes = " | ".join(rows(page, "changes"))
    history = tfmirror(path, "history").stdout
    for shown in (changes, history):
        assert "quarantined: tensorflow-2.20.0-py3-none-any.whl (bad build)" in shown, shown
        assert "quarantined: tensorflow==2.18.0 (CVE-2026-1)" in shown
        assert "snapshot deleted: s1" in shown
        assert "live promoted: @live (was s1)" in shown
        assert "snapshot promoted: s1 (was @live)" in shown
        assert "snapshot created: s1 (" in shown
        assert (
            "requirements changed: tensorflow==2.18.* -> tensorflow==2.18.0 "
            "[old/py3.11-manylinux_2_28_x86_64]" in shown
        )
        assert not re.search(r"\w: (\||$|\n)", shown), shown  # nothing ends at a colon


def test_each_job_button_names_its_job_and_a_verify_error_is_listed_once(tmp_path: Path) -> None:
    path = two_environments(tmp_path, "http://127.0.0.1:9/simple/")
    config = load_config(str(path))
    store = open_store(config.storage)
    failed = TargetProof("new/py3.11-manylinux_2_28_x86_64", False, "pip", "no tensorflow")
    report = VerifyReport(ScrubReport(), targets=[failed])
    store.put(VERIFY_STATE, json.dumps(report.as_json()).encode())
    page = create_app(config, store).test_client().get("/").get_data(as_text=True)
    buttons = dict(re.findall(r"data-job=\"(\w+)\".*?<button[^>]*>([^<]*)</button>", page))
    assert buttons == {
        "pypi": "Sync PyPI now",
        "hub": "Sync models now",
        "verify": "Verify now",
        "gc": "Collect garbage now",
        "snapshot": "Snapshot now",
    }, buttons
    section = text_of(page.split("<h2>Verification</h2>", 1)[1].split("<p class", 1)[0])
    assert section.count("no tensorflow") == 1, section


def test_the_progress_bar_counts_only_bytes_it_saw_move(upstream: Upstream, tmp_path: Path) -> None:
    # Before: a wheel the speculative prefetch had fetched during the resolve was added in one go
    # when the bar began ("615/1307 MB 5337 MB/s").
    upstream.add(WheelSpec("tensorflow", "2.20.0", requires=["numpy"], noise=3_000_000))
    numpy = upstream.add(WheelSpec("numpy", "2.0.0", noise=1_000_000), "slow")
    path = two_environments(tmp_path, upstream.index_url)
    text = path.read_text().replace("tensorflow==2.18.*", "tensorflow==2.20.*")
    path.write_text(text.replace("timeout = 2", "timeout = 30"))  # numpy's answer waits 5 s
    config = load_config(str(path))

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    report = PypiSync(config, open_store(config.storage), None, TerminalProgress(out)).run()
    assert report.ok, report.failures
    last = out.getvalue().strip().split("\r")[-1]
    bar = re.search(r"(\d+)/(\d+) files (\d+)/(\d+) MB (\d+) MB/s", last)
    assert bar is not None, last
    files, of_files, mb, of_mb, rate = (int(n) for n in bar.groups())
    # tensorflow came by the speculative prefetch during the resolve: only numpy moved under the
    # bar, slowly (its answer waits 5 s).
    assert (files, of_files) == (1, 1), last
    assert mb == of_mb == round(len(numpy.data) / 1e6), last
    assert rate < 5, last


def test_status_in_a_folder_with_no_mirror_creates_nothing_and_says_how_to_start(
    tmp_path: Path,
) -> None:
    # Before: it made ./data, printed "all jobs ok" with every job "never run", exit 0.
    done = tfmirror(None, "status", cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert list(tmp_path.iterdir()) == []
    assert "no mirror here yet" in done.stdout + done.stderr
    assert "tfmirror up" in done.stdout + done.stderr
    assert "all jobs ok" not in done.stdout
    LocalStore(tmp_path / "data")  # an empty store folder is no mirror either
    assert tfmirror(None, "status", cwd=tmp_path).returncode == 1
