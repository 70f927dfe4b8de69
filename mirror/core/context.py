"""What a request handler needs from the app it runs in: the validated config and the
store. The composition root binds them; the blueprints of every side read them here,
so no blueprint imports the app factory. The config is read per request from its one
holder, so a reload (`tfmirror up` on SIGHUP) reaches every page at once."""

from __future__ import annotations

from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException

from mirror.core.config import Config
from mirror.core.live_config import LiveConfig
from mirror.core.storage import BlobStore

CONFIG, STORE, PUBLIC = "tfmirror.config", "tfmirror.store", "tfmirror.public_url"

# Pages are the mirror's own: nothing from elsewhere, never inside another site's frame.
# Inline style and script are the status page's (no third-party code is ever inlined).
PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def bind(app: Flask, config: Config | LiveConfig, store: BlobStore, public_url: str = "") -> Flask:
    """`public_url`: where clients reach this app (the entry point), for the snippets
    pages print; never taken from the request's Host header, which anyone can set."""
    live = config if isinstance(config, LiveConfig) else LiveConfig(config)
    app.extensions[CONFIG] = live
    app.extensions[STORE] = store
    app.extensions[PUBLIC] = (public_url or live.current.web.base_url).rstrip("/")
    app.after_request(_secure_headers)
    return app


_SECURE_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", PAGE_POLICY),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)


def _secure_headers(resp: Response) -> Response:
    # One pass over the headers a handler set, not a scan per header (setdefault): an
    # index page is answered a thousand times a second, and this ran on every answer.
    present = {name.lower() for name, _ in resp.headers.items()}
    for name, value in _SECURE_HEADERS:
        if name.lower() not in present:
            resp.headers.add(name, value)
    return resp


def app_public_url() -> str:
    """The base URL clients use for this mirror, e.g. http://mirror.internal:8000."""
    url: str = current_app.extensions[PUBLIC]
    return url


def app_config() -> Config:
    """The validated config of the app handling the current request, as it is now."""
    return app_live_config().current


def app_live_config() -> LiveConfig:
    """The holder of the app's config, and what its last reload did."""
    live: LiveConfig = current_app.extensions[CONFIG]
    return live


def app_store() -> BlobStore:
    """The store of the app handling the current request."""
    store: BlobStore = current_app.extensions[STORE]
    return store


def json_errors(app: Flask) -> None:
    """HTTP errors as {"error", "message"} JSON, the same in every app we build."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        resp = jsonify(error=exc.name, message=exc.description)
        resp.status_code = exc.code or 500
        # What the error says about the resource stays: Allow on a 405, Content-Range
        # on a 416, WWW-Authenticate on a 401.
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                resp.headers[name] = value
        return resp
