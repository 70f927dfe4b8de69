"""Flask app factory (the composition root): one blueprint per package, a job runner
with every package's jobs, nothing started at import time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask

from mirror.core.config import Config
from mirror.core.context import bind, json_errors
from mirror.core.live_config import LiveConfig
from mirror.core.storage import BlobStore, open_store

if TYPE_CHECKING:
    from sync_jobs.runner import JobRunner


def create_app(
    config: Config | LiveConfig, store: BlobStore | None = None, runner: JobRunner | None = None
) -> Flask:
    """`config`: a LiveConfig where it can be reloaded (`up`); pages read it per request."""
    from hub_cache.routes import blueprint as hub_pages
    from mirror.proxy.nginx import entry_point
    from mirror.pypi.simple_pages import blueprint as pypi_pages
    from sync_jobs.routes import RUNNER
    from sync_jobs.routes import blueprint as ops_pages
    from sync_jobs.runner import JobRunner
    from tfmirror.fleet_index import blueprint as fleet_index
    from tfmirror.jobs import registry

    live = config if isinstance(config, LiveConfig) else LiveConfig(config)
    store = store if store is not None else open_store(live.current.storage)
    app = bind(Flask("tfmirror"), live, store, entry_point(live.current).base_url)
    app.extensions[RUNNER] = runner or JobRunner(live, store, registry())
    app.register_blueprint(pypi_pages)
    app.register_blueprint(fleet_index)
    app.register_blueprint(hub_pages)
    app.register_blueprint(ops_pages)
    json_errors(app)
    return app
