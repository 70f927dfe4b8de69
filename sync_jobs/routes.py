"""The ops side of the web front: status page, JSON, metrics, health, admin actions."""

from __future__ import annotations

import hmac
import json
import os
import threading
import time
from collections.abc import Callable

import requests
from flask import Blueprint, Response, current_app, jsonify, request
from packaging.utils import canonicalize_name
from prometheus_client import CONTENT_TYPE_LATEST

from mirror.core.context import app_live_config, app_public_url, app_store
from mirror.core.errors import JobBusy, StoreError
from mirror.core.journal import Journal, parse_since
from sync_jobs.metrics import render_metrics
from sync_jobs.page import render_page
from sync_jobs.runner import JobRunner
from sync_jobs.status import Status, collect_status

ENV_ADMIN_TOKEN = "TFMIRROR_ADMIN_TOKEN"

RUNNER = "tfmirror.runner"  # where the composition root puts the job runner

blueprint = Blueprint("ops", __name__)


class StatusCache:
    """The status document, rebuilt at most once per `ttl` seconds.

    Many readers poll it (operators' tabs, Prometheus, health checks) while it changes
    only when a job finishes; one second of staleness is invisible on a page that
    reloads every 30 s, and it keeps the front's CPU for downloads.
    """

    def __init__(self, ttl: float = 1.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._value: Status | None = None
        self._rendered: dict[str, bytes | str] = {}
        self._at = 0.0

    def get(self, build: Callable[[], Status]) -> Status:
        with self._lock:
            if self._value is None or time.monotonic() - self._at > self.ttl:
                self._value = build()
                self._rendered = {}
                self._at = time.monotonic()
            return self._value

    def rendered(
        self,
        kind: str,
        build: Callable[[], Status],
        render: Callable[[Status], bytes | str],
    ) -> bytes | str:
        status = self.get(build)
        with self._lock:
            if kind not in self._rendered:
                self._rendered[kind] = render(status)
            return self._rendered[kind]


def _build() -> Status:
    live = app_live_config()
    return collect_status(live.current, app_store(), app_public_url(), live.note())


def _cache() -> StatusCache:
    cache: StatusCache | None = current_app.extensions.get("tfmirror.status_cache")
    if cache is None:
        cache = current_app.extensions.setdefault("tfmirror.status_cache", StatusCache())
    return cache


@blueprint.get("/")
def page() -> Response:
    body = _cache().rendered("page", _build, render_page)
    return Response(body, content_type="text/html; charset=utf-8")


@blueprint.get("/api/status")
def api_status() -> Response:
    body = _cache().rendered("json", _build, lambda status: json.dumps(status.as_json()))
    return Response(body, content_type="application/json")


@blueprint.get("/api/history")
def api_history() -> tuple[Response, int] | Response:
    """The journal's entries, newest first: ?project=, ?model=, ?since=, ?limit= (100)."""
    args = request.args
    try:
        since = parse_since(args["since"]) if args.get("since") else None
        limit = int(args.get("limit", "100"))
    except ValueError:
        return jsonify(error="since must be a date or ISO 8601 time, limit a number"), 400
    project = canonicalize_name(args["project"]) if args.get("project") else None
    found = Journal(app_store()).history(project, args.get("model") or None, since, limit)
    return jsonify(found)


@blueprint.get("/metrics")
def metrics() -> Response:
    body = _cache().rendered("metrics", _build, render_metrics)
    return Response(body, content_type=CONTENT_TYPE_LATEST)


@blueprint.get("/healthz")
def healthz() -> Response:
    return jsonify(ok=True)


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    problems = {}
    try:
        app_store().list("manifests/pypi")
    except StoreError as exc:
        problems["store"] = str(exc)
    devpi = app_live_config().current.devpi.url
    try:
        if requests.get(f"{devpi}/+api", timeout=3).status_code != 200:
            problems["devpi"] = f"{devpi} answered, but not as devpi"
    except requests.RequestException:
        problems["devpi"] = f"{devpi} is unreachable"
    return jsonify(ready=not problems, problems=problems), (503 if problems else 200)


def _runner() -> JobRunner:
    """The runner the composition root gave the app (every package's jobs, one lease)."""
    runner: JobRunner = current_app.extensions[RUNNER]
    return runner


@blueprint.post("/api/jobs/<job>/run")
def run_job(job: str) -> tuple[Response, int]:
    expected = os.environ.get(ENV_ADMIN_TOKEN, "")
    if not expected:
        return jsonify(message=f"admin endpoints are off: set {ENV_ADMIN_TOKEN}"), 403
    given = request.headers.get("Authorization", "")
    if not given.startswith("Bearer "):
        return jsonify(message="send Authorization: Bearer <admin token>"), 401
    if not hmac.compare_digest(given[len("Bearer ") :].encode(), expected.encode()):
        return jsonify(message="wrong admin token"), 403
    runner = _runner()
    if job not in runner.jobs:
        return jsonify(message=f"no job {job!r}; jobs: {', '.join(sorted(runner.jobs))}"), 404
    try:
        runner.start(job, "manual")
    except JobBusy as busy:
        return jsonify(message=str(busy)), 409
    return jsonify(message=f"{job} started", job=job), 202
