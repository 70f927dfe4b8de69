"""Letting nginx send a blob file itself (X-Accel-Redirect: sendfile, Range, HEAD and
thousands of slow clients) while a front only decides which blob: the tfmirror proxy
sets ACCEL_HEADER on what it forwards when it can read the local store's blobs/sha256
folder, under the internal location ACCEL_PREFIX, and only that exact value counts, so a
header from anyone else can never point nginx at another folder."""

from __future__ import annotations

from flask import Request, Response

ACCEL_HEADER = "X-Tfmirror-Accel-Blobs"
ACCEL_PREFIX = "/_tfmirror/blobs/"


def nginx_sends(request: Request) -> bool:
    """True if the request came through a proxy that can send the store's blob files."""
    return request.headers.get(ACCEL_HEADER) == ACCEL_PREFIX


def accel_redirect(sha256: str, filename: str) -> Response:
    """An empty answer that has nginx send blob `sha256` as `filename`; conditional
    requests are the caller's to answer first, where the sha256 is known."""
    resp = Response(status=200, mimetype="application/octet-stream")
    resp.set_etag(sha256)
    resp.headers["Content-Disposition"] = f"attachment; filename={filename}"
    resp.headers["X-Accel-Redirect"] = f"{ACCEL_PREFIX}{sha256[:2]}/{sha256}"
    return resp
