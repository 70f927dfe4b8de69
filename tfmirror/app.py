"""Flask app factory (the composition root): one blueprint per package, the job runner
of the mirror's parts, nothing started at import time."""

from __future__ import annotations

from flask import Flask

from mirror.core.config import Config
from mirror.core.context import bind, json_errors
from mirror.core.live_config import LiveConfig
from mirror.core.storage import BlobStore
from tfmirror.parts import MirrorParts


def create_app(config: Config | LiveConfig | MirrorParts, store: BlobStore | None = None) -> Flask:
    """`config`: the mirror's parts (`up`, which shares them with its scheduler), or a
    config to build them from (`store`, if given, is theirs). A LiveConfig where it can
    be reloaded (`up`): pages read it per request."""
    from follow.api import blueprint as follow_api
    from hub_cache.routes import blueprint as hub_pages
    from mirror.proxy.nginx import entry_point
    from mirror.pypi.simple_pages import blueprint as pypi_pages
    from sync_jobs.routes import RUNNER
    from sync_jobs.routes import blueprint as ops_pages
    from tfmirror.fleet_index import blueprint as fleet_index

    parts = config if isinstance(config, MirrorParts) else MirrorParts(config, store)
    live = parts.live
    app = bind(Flask("tfmirror"), live, parts.store, entry_point(live.current).base_url)
    app.extensions[RUNNER] = parts.runner
    app.register_blueprint(pypi_pages)
    app.register_blueprint(fleet_index)
    app.register_blueprint(hub_pages)
    app.register_blueprint(ops_pages)
    app.register_blueprint(follow_api)
    json_errors(app)
    return app
