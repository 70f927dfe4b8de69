"""What a request handler needs from the app it runs in: the validated config and the
store. The composition root binds them; the blueprints of every side read them here,
so no blueprint imports the app factory."""

from __future__ import annotations

from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException

from mirror.core.config import Config
from mirror.core.storage import BlobStore

CONFIG, STORE = "tfmirror.config", "tfmirror.store"


def bind(app: Flask, config: Config, store: BlobStore) -> Flask:
    app.extensions[CONFIG] = config
    app.extensions[STORE] = store
    return app


def app_config() -> Config:
    """The validated config of the app handling the current request."""
    config: Config = current_app.extensions[CONFIG]
    return config


def app_store() -> BlobStore:
    """The store of the app handling the current request."""
    store: BlobStore = current_app.extensions[STORE]
    return store


def json_errors(app: Flask) -> None:
    """HTTP errors as {"error", "message"} JSON, the same in every app we build."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify(error=exc.name, message=exc.description), exc.code or 500
