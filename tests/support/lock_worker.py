"""A scheduler-like process for lock tests: runs a job under the leader lock and logs it.

    python -m tests.support.lock_worker ENDPOINT BUCKET LOG SECONDS JOB_SECONDS TTL
Repeatedly runs job "demo" (which sleeps JOB_SECONDS, then commits: its "end" line,
fenced by the lease) for SECONDS; appends "start <t>", "end <t>", "busy <t>" and
"fenced <t>" (the lease was lost before the commit) lines, with its pid, to LOG.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from mirror.core.config import StorageConfig, parse_config
from mirror.core.errors import LeaseLost
from mirror.core.lease import fence
from mirror.core.storage import S3Store
from sync_jobs.runner import JobRunner


def main(
    endpoint: str, bucket: str, log: str, seconds: float, job_seconds: float, ttl: float
) -> None:
    store = S3Store(StorageConfig(backend="s3", bucket=bucket, endpoint_url=endpoint))
    config = parse_config(
        {"schedule": {"retries": 0, "lease_seconds": max(5, int(ttl))}}, Path(".")
    )
    out = Path(log)
    pid = os.getpid()

    def note(what: str) -> None:
        with out.open("a") as f:
            f.write(f"{pid} {what} {time.time():.3f}\n")

    def demo(config: object, store: object, trigger: str) -> bool:
        note("start")
        time.sleep(job_seconds)
        try:
            fence("demo")
        except LeaseLost:
            note("fenced")
            return False
        note("end")
        return True

    runner = JobRunner(config, store, jobs={"demo": demo}, lock=store.leader_lock(ttl))
    deadline = time.time() + seconds
    while time.time() < deadline:
        if runner.run("demo", "schedule") == "busy":
            note("busy")
        time.sleep(0.1)  # like a scheduler, do not fire again the same instant


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], *map(float, sys.argv[4:7]))
