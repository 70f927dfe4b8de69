"""Conditional and range requests for model archives, answered the same on every store.

RFC 9110 as clients and caches rely on it: If-Match that fails is 412 and If-None-Match
that matches is 304, both without a body; a Range the server cannot parse, or several
ranges, is ignored (the whole archive, 200); one range past the end is 416 with
`Content-Range: bytes */<size>`; If-Range with another ETag turns a range into a 200.
werkzeug answers some of these differently (416 for a malformed Range, a 412 that
carries the file), so the front decides here and hands werkzeug only clean requests.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Request, Response
from werkzeug.http import parse_range_header


@dataclass(frozen=True)
class Plan:
    """What to send: bytes [start, end) of the archive, 200 (whole) or 206 (a range)."""

    start: int
    end: int
    partial: bool


def _etag_matches(header: str, etag: str, weak_ok: bool) -> bool:
    for raw in header.split(","):
        tag = raw.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            if not weak_ok:
                continue
            tag = tag[2:]
        if tag.strip('"') == etag:
            return True
    return False


def _empty(status: int, etag: str) -> Response:
    resp = Response(b"", status=status)
    resp.set_etag(etag)
    return resp


def decide(request: Request, etag: str, size: int) -> Plan | Response:
    """A Plan for the body, or the complete answer when there is no body to send."""
    if_match = request.headers.get("If-Match")
    if if_match is not None and not _etag_matches(if_match, etag, weak_ok=False):
        return _empty(412, etag)
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and _etag_matches(if_none_match, etag, weak_ok=True):
        return _empty(304, etag)
    whole = Plan(0, size, False)
    header = request.headers.get("Range")
    if header is None or request.method not in ("GET", "HEAD"):
        return whole
    if_range = request.headers.get("If-Range")
    if if_range is not None and not _etag_matches(if_range, etag, weak_ok=False):
        return whole
    parsed = parse_range_header(header)
    if parsed is None or parsed.units != "bytes" or len(parsed.ranges) != 1:
        return whole  # malformed or several ranges: ignore the header
    span = parsed.range_for_length(size)
    if span is None:
        resp = _empty(416, etag)
        resp.headers["Content-Range"] = f"bytes */{size}"
        return resp
    start, end = span
    return Plan(start, end, True)


def clean_environ(request: Request, plan: Plan) -> None:
    """Drop what was decided here from the request, so a responder that handles
    conditionals itself (send_file) sees only the range that the plan kept."""
    for key in ("HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH", "HTTP_IF_RANGE"):
        request.environ.pop(key, None)
    if not plan.partial:
        request.environ.pop("HTTP_RANGE", None)
