"""Flask app factory: one blueprint per package, nothing started at import time."""

from __future__ import annotations

from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException

from mirror.config import Config
from mirror.storage import BlobStore, open_store


def create_app(config: Config, store: BlobStore | None = None) -> Flask:
    from hub_cache.routes import blueprint as hub_pages
    from mirror.simple_pages import blueprint as pypi_pages
    from sync_jobs.routes import blueprint as ops_pages

    app = Flask("tfmirror")
    app.extensions["tfmirror.config"] = config
    app.extensions["tfmirror.store"] = store if store is not None else open_store(config.storage)
    app.register_blueprint(pypi_pages)
    app.register_blueprint(hub_pages)
    app.register_blueprint(ops_pages)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify(error=exc.name, message=exc.description), exc.code or 500

    return app


def app_config() -> Config:
    """The validated config of the app handling the current request."""
    config: Config = current_app.extensions["tfmirror.config"]
    return config


def app_store() -> BlobStore:
    """The store of the app handling the current request."""
    store: BlobStore = current_app.extensions["tfmirror.store"]
    return store
