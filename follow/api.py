"""The centre's read API for its followers (`/api/follow/...`): the journal's head
(ETag; a conditional GET that finds it unmoved is a 304, so an idle site costs one tiny
answer per interval), the entries after a number, the state document (follow.state),
one followed document by key, one blob by sha256. With TFMIRROR_FOLLOW_API_TOKEN set in
the centre's environment, each asks for it as a bearer token (compared in constant time,
never logged). A site serves the same API from what it holds, so a site can be followed
in turn (centre -> region -> site)."""

from __future__ import annotations

import hmac
import json
import os
import re

from flask import Blueprint, Response, abort, request

from follow.state import followed_key, sha256_of, state_of
from mirror.core.context import app_store
from mirror.core.credentials import FOLLOW_API_TOKEN_ENV
from mirror.core.followers import FOLLOWER_HEADER, FOLLOWER_SEQ_HEADER, note_follower
from mirror.core.journal import Journal
from mirror.core.runs import utcnow
from mirror.pypi.simple_pages import blob_response

blueprint = Blueprint("follow_api", __name__)
PAGE = 500  # journal entries per answer: bounded, whatever `limit` asks
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@blueprint.before_request
def _authorised() -> None:
    token = os.environ.get(FOLLOW_API_TOKEN_ENV, "")
    if not token:
        return
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        abort(401, description="this centre's follow API wants its read token")


def _json(doc: object, etag: str | None = None) -> Response:
    resp = Response(json.dumps(doc), mimetype="application/json")
    resp.headers["Cache-Control"] = "no-cache"
    if etag is not None:
        resp.set_etag(etag)
    return resp


@blueprint.get("/api/follow/head")
def head() -> Response:
    """Each site asks this every interval, saying who it is and what it holds: the centre
    remembers it (mirror.core.followers) for its status page."""
    name = request.headers.get(FOLLOWER_HEADER)
    if name is not None:
        seq = request.headers.get(FOLLOWER_SEQ_HEADER, "-1")
        note_follower(app_store(), name, seq, request.remote_addr or "", utcnow())
    entry = Journal(app_store()).head()
    etag = f"{entry.seq}.{entry.sha256}" if entry else "empty"
    if etag in request.if_none_match:
        resp = Response(status=304)
        resp.set_etag(etag)
        return resp
    doc = {"seq": entry.seq, "sha256": entry.sha256} if entry else {"seq": -1, "sha256": ""}
    return _json(doc, etag)


@blueprint.get("/api/follow/journal")
def journal() -> Response:
    """Entries after `after` (-1: from the first), their exact bytes, one a line."""
    after = request.args.get("after", "-1")
    if not re.fullmatch(r"-1|\d{1,15}", after):
        abort(400, description="after: an entry's number, or -1 for the first")
    entries = Journal(app_store()).after(int(after), PAGE)
    body = b"".join(entry.raw + b"\n" for entry in entries)
    resp = Response(body, mimetype="application/x-ndjson")
    resp.headers["Cache-Control"] = "no-cache"
    return resp


@blueprint.get("/api/follow/state")
def state() -> Response:
    return _json(state_of(app_store()).as_json())


@blueprint.get("/api/follow/doc")
def doc() -> Response:
    key = request.args.get("key", "")
    if not followed_key(key):
        abort(404, description="not a document a follower takes")
    data = app_store().get(key)
    if data is None:
        abort(404, description=f"{key} is not here (changed since the state was read?)")
    resp = Response(data, mimetype="application/json")
    resp.set_etag(sha256_of(data))
    return resp


@blueprint.get("/api/follow/blob/<sha256>")
def blob(sha256: str) -> Response:
    if not _SHA256.match(sha256):
        abort(404, description="a blob is named by its sha256 (64 lowercase hex digits)")
    return blob_response(sha256, sha256)
