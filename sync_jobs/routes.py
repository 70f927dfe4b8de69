"""The ops side of the web front: status page, JSON, metrics, health, admin actions."""

from __future__ import annotations

import hmac
import os
import threading

import requests
from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST

from mirror.config import Config
from mirror.storage import BlobStore, StoreError
from sync_jobs.metrics import render_metrics
from sync_jobs.page import render_page
from sync_jobs.runner import JobRunner
from sync_jobs.status import collect_status

ENV_ADMIN_TOKEN = "TFMIRROR_ADMIN_TOKEN"

blueprint = Blueprint("ops", __name__)


def _config() -> Config:
    config: Config = current_app.extensions["tfmirror.config"]
    return config


def _store() -> BlobStore:
    store: BlobStore = current_app.extensions["tfmirror.store"]
    return store


def _status() -> dict[str, object]:
    return collect_status(_config(), _store())


@blueprint.get("/")
def page() -> Response:
    return Response(render_page(_status()), content_type="text/html; charset=utf-8")


@blueprint.get("/api/status")
def api_status() -> Response:
    return jsonify(_status())


@blueprint.get("/metrics")
def metrics() -> Response:
    return Response(render_metrics(_status()), content_type=CONTENT_TYPE_LATEST)


@blueprint.get("/healthz")
def healthz() -> Response:
    return jsonify(ok=True)


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    problems = {}
    try:
        _store().list("manifests/pypi")
    except StoreError as exc:
        problems["store"] = str(exc)
    devpi = _config().devpi.url
    try:
        if requests.get(f"{devpi}/+api", timeout=3).status_code != 200:
            problems["devpi"] = f"{devpi} answered, but not as devpi"
    except requests.RequestException:
        problems["devpi"] = f"{devpi} is unreachable"
    return jsonify(ready=not problems, problems=problems), (503 if problems else 200)


def _runner() -> JobRunner:
    runner: JobRunner | None = current_app.extensions.get("tfmirror.runner")
    if runner is None:
        runner = JobRunner(_config(), _store())
        current_app.extensions["tfmirror.runner"] = runner
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
    lease = runner.lock.acquire(job)
    if lease is None:
        return jsonify(message=f"{job} is running already"), 409
    threading.Thread(target=runner.run_leased, args=(lease, "manual"), daemon=True).start()
    return jsonify(message=f"{job} started", job=job), 202
