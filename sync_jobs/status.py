"""What the status page, /api/status, /metrics and `tfmirror status` show: one document.

Built from small index documents only (runs/<job>/latest.json and friends, manifests,
state/), never from the run history, so it stays fast with 10,000 run records.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from hub_cache.models import load_models
from mirror.core.config import Config
from mirror.core.runs import VERIFY_STATE, read_index
from mirror.core.storage import BlobStore
from mirror.pypi.lag import read_lag
from mirror.pypi.manifest import load_all
from sync_jobs.scheduler import next_run


def _job(config: Config, store: BlobStore, job: str, cron: str) -> dict[str, Any]:
    latest = read_index(store, job, "latest.json")
    success = read_index(store, job, "last-success.json")
    totals = read_index(store, job, "totals.json") or {"runs": 0, "failed": 0, "bytes": 0}
    upcoming = next_run(cron) if cron else None
    errors = latest.get("errors", []) if latest else []
    return {
        "job": job,
        "schedule": cron or "not scheduled",
        "next_run": upcoming.isoformat() if upcoming else None,
        "last_run": None
        if latest is None
        else {
            "start": latest["start"],
            "end": latest["end"],
            "seconds": latest["seconds"],
            "trigger": latest["trigger"],
            "outcome": latest["outcome"],
            "counts": latest.get("counts", {}),
            "bytes": latest.get("bytes", 0),
        },
        "last_success": success["end"] if success else None,
        "last_error": errors[0] if latest and latest["outcome"] != "ok" and errors else None,
        "error_count": len(errors) if latest and latest["outcome"] != "ok" else 0,
        "totals": totals,
    }


def _lag(config: Config, mirrored: dict[str, set[str]], store: BlobStore) -> list[dict[str, Any]]:
    lag = read_lag(store)
    newest: dict[str, str] = dict(lag.get("newest", {}))  # type: ignore[call-overload]
    rows = []
    for requirement in config.pypi.requirements:
        name = canonicalize_name(Requirement(requirement).name)
        have = sorted(mirrored.get(name, set()), key=_version_key)
        latest = newest.get(name, "")
        behind = bool(latest and (not have or _version_key(have[-1]) < _version_key(latest)))
        rows.append(
            {
                "requirement": requirement,
                "project": name,
                "mirrored": have,
                "newest_upstream": latest or None,
                "behind": behind,
            }
        )
    return rows


def _version_key(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


def collect_status(config: Config, store: BlobStore) -> dict[str, Any]:
    jobs = [_job(config, store, job, cron) for job, cron in config.schedule.jobs]
    manifests = load_all(store)
    mirrored: dict[str, set[str]] = {}
    targets = []
    for manifest in manifests:
        for wheel in manifest.files:
            mirrored.setdefault(wheel.project, set()).add(wheel.version)
        targets.append(
            {
                "target": manifest.target.id,
                "projects": len({w.project for w in manifest.files}),
                "files": len(manifest.files),
                "bytes": sum(w.size or 0 for w in manifest.files),
                "synced_at": manifest.synced_at,
            }
        )
    models = [
        {
            "handle": m.handle,
            "path": m.path,
            "size": m.size,
            "sha256": m.sha256,
            "synced_at": m.synced_at,
        }
        for m in load_models(store)
    ]
    verify_raw = store.get(VERIFY_STATE)
    failing = [j["job"] for j in jobs if j["last_run"] and j["last_run"]["outcome"] != "ok"]
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "healthy": not failing,
        "failing_jobs": failing,
        "jobs": jobs,
        "inventory": {
            "targets": targets,
            "models": models,
            "pypi_bytes": sum({w.sha256: w.size or 0 for m in manifests for w in m.files}.values()),
            "hub_bytes": sum(m["size"] for m in models),
        },
        "lag": _lag(config, mirrored, store),
        "verification": json.loads(verify_raw) if verify_raw else None,
        "store": store.describe(),
        "devpi_index": config.devpi.index_url,
    }
