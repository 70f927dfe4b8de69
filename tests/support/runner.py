"""A runner over a test's own store, for tests that call gc or verify directly: the app
hands them its runner's `keeping_out`, and so does a test, from this runner."""

from __future__ import annotations

from pathlib import Path

from mirror.core.config import Config, parse_config
from mirror.core.storage import BlobStore
from sync_jobs.runner import JobRunner


def runner_over(store: BlobStore, config: Config | None = None) -> JobRunner:
    """A runner with no jobs of its own over `store` (the built-in config when none is
    given: only its lease length is read)."""
    return JobRunner(config or parse_config({}, Path.cwd()), store, {})
