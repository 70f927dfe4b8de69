"""Status page, /api/status, /metrics, health and admin endpoints, via Flask's test client."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from mirror.core.config import parse_config
from mirror.core.runs import RunRecord
from mirror.core.storage import LocalStore
from sync_jobs.routes import StatusCache
from sync_jobs.runner import JobRunner
from tfmirror.app import create_app

HUB_ERROR = {
    "name": "https://tfhub.dev/google/evil/1",
    "url": "https://tfhub.dev/google/evil/1?tf-hub-format=compressed",
    "reason": "rejected: symlink: './evil' -> '/etc/passwd'",
}
TOKEN = "s3cret-admin-token"


@pytest.fixture
def app_parts(tmp_path: Path):  # type: ignore[no-untyped-def]
    config = parse_config({"devpi": {"url": "http://127.0.0.1:9"}}, tmp_path)
    store = LocalStore(tmp_path / "store")
    RunRecord.begin("pypi", "schedule").finish(
        store, True, {"new": 3, "skipped": 31, "failed": 0}, 1234, []
    )
    RunRecord.begin("hub", "schedule").finish(store, False, {"new": 0, "failed": 1}, 0, [HUB_ERROR])
    app = create_app(config, store)
    ran = threading.Event()
    app.extensions["tfmirror.runner"] = JobRunner(
        config, store, {"pypi": lambda c, s, t: ran.set() or True}
    )
    return app, ran


@pytest.fixture
def client(app_parts) -> FlaskClient:  # type: ignore[no-untyped-def]
    return app_parts[0].test_client()


def test_page_shows_jobs_and_a_failed_sync_with_its_reason(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    assert 'data-job="pypi"' in page and 'data-job="hub"' in page
    assert '<tr class="row-failed" data-job="hub">' in page
    assert "symlink: &#39;./evil&#39; -&gt; &#39;/etc/passwd&#39;" in page  # escaped
    assert "failing: hub" in page
    assert 'http-equiv="refresh"' in page


def test_api_status_has_the_same_facts(client: FlaskClient) -> None:
    status = client.get("/api/status").get_json()
    jobs = {j["job"]: j for j in status["jobs"]}
    assert jobs["pypi"]["last_run"]["outcome"] == "ok"
    assert jobs["hub"]["last_error"]["reason"] == HUB_ERROR["reason"]
    assert jobs["pypi"]["next_run"] and status["healthy"] is False


def test_metrics_parse_with_the_prometheus_parser(client: FlaskClient) -> None:
    answer = client.get("/metrics")
    assert answer.content_type.startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.get_data(as_text=True))
        for s in family.samples
    }
    assert samples[("tfmirror_job_last_run_ok", (("job", "hub"),))] == 0
    assert samples[("tfmirror_job_last_run_ok", (("job", "pypi"),))] == 1
    assert samples[("tfmirror_job_last_run_bytes", (("job", "pypi"),))] == 1234
    assert samples[("tfmirror_job_failures_total", (("job", "hub"),))] == 1
    assert ("tfmirror_job_last_success_timestamp_seconds", (("job", "pypi"),)) in samples


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"ok": True}
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "unreachable" in ready.get_json()["problems"]["devpi"]


def test_admin_endpoint_is_off_without_a_configured_token(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TFMIRROR_ADMIN_TOKEN", raising=False)
    answer = client.post("/api/jobs/pypi/run", headers={"Authorization": "Bearer anything"})
    assert answer.status_code == 403


def test_admin_endpoint_rejects_missing_or_wrong_token_and_runs_with_the_right_one(
    app_parts,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    app, ran = app_parts
    client = app.test_client()
    monkeypatch.setenv("TFMIRROR_ADMIN_TOKEN", TOKEN)
    assert client.post("/api/jobs/pypi/run").status_code == 401
    wrong = client.post("/api/jobs/pypi/run", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and not ran.is_set()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/api/jobs/nojob/run", headers=auth).status_code == 404
    assert client.post("/api/jobs/pypi/run", headers=auth).status_code == 202
    assert ran.wait(10)
    for path in ("/", "/api/status", "/metrics"):
        assert TOKEN not in client.get(path).get_data(as_text=True)


def test_a_job_that_raises_is_a_failed_run_on_the_page_api_and_metrics(
    app_parts,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    app, _ = app_parts
    runner = app.extensions["tfmirror.runner"]

    def crashes(config: object, store: object, trigger: str) -> bool:
        raise OSError(36, "File name too long", "x" * 300_000 + " http://u:pw@h/x")

    runner.jobs["verify"] = crashes
    runner.sleep = lambda seconds: None  # retries of the crash: no backoff here
    client = app.test_client()
    monkeypatch.setenv("TFMIRROR_ADMIN_TOKEN", TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/api/jobs/verify/run", headers=auth).status_code == 202
    time.sleep(0.2)
    assert runner.wait_idle(30)
    jobs = {j["job"]: j for j in client.get("/api/status").get_json()["jobs"]}
    assert jobs["verify"]["last_run"]["outcome"] == "failed"
    reason = jobs["verify"]["last_error"]["reason"]
    assert reason.startswith("stopped on an unexpected error: OSError: [Errno 36] File name")
    # Bounded, and the credentials in the text are gone everywhere.
    assert len(client.get("/api/status").get_data()) < 20_000
    for path in ("/", "/api/status", "/metrics"):
        assert "u:pw@" not in client.get(path).get_data(as_text=True)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert re.search(r"tfmirror_job_failures_total{job=\"verify\"} [1-9]", metrics), metrics


def test_a_running_job_and_each_jobs_last_runs_are_shown(app_parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Before: verify ran for 80 s while the page said "never", and there was no history.
    app, _ = app_parts
    app.extensions["tfmirror.status_cache"] = StatusCache(ttl=0)  # each request sees now
    client = app.test_client()
    runner = app.extensions["tfmirror.runner"]
    with runner.hold("verify"):
        page = client.get("/").get_data(as_text=True)
        row = page.split('data-job="verify"', 1)[1].split("</tr>", 1)[0]
        assert "running since" in row
        jobs = {j["job"]: j for j in client.get("/api/status").get_json()["jobs"]}
        assert jobs["verify"]["running_since"] and jobs["pypi"]["running_since"] is None
    jobs = {j["job"]: j for j in client.get("/api/status").get_json()["jobs"]}
    assert jobs["verify"]["running_since"] is None

    store = LocalStore(tmp_path / "store")
    for ok in (True, False, True):
        record = RunRecord.begin("pypi", "schedule")
        record.finish(store, ok, {}, 10_000, [] if ok else [HUB_ERROR])
    recent = {j["job"]: j for j in client.get("/api/status").get_json()["jobs"]}["pypi"]
    assert [r["ok"] for r in recent["recent"]] == [True, True, False, True]
    page = client.get("/").get_data(as_text=True)
    chart = page.split('data-job="pypi"', 1)[1].split("</svg>", 1)[0]
    assert chart.count("<rect") == 4 and chart.count('fill="#b00020"') == 1

    # A marker left by a process of this machine that is gone does not count.
    (tmp_path / "store" / "runs" / "gc").mkdir(parents=True, exist_ok=True)
    gone = {"since": "2026-11-28T10:00:00Z", "holder": f"{socket.gethostname()}:999999:abc"}
    (tmp_path / "store" / "runs" / "gc" / "running.json").write_text(json.dumps(gone))
    jobs = {j["job"]: j for j in client.get("/api/status").get_json()["jobs"]}
    assert jobs["gc"]["running_since"] is None
