"""Sending a model's bytes to its client: the blob of the model or of one of its files,
with Content-Length, the sha256 as ETag, Range and HEAD (a sendfile on local disk, nginx's
own when it fronts us; chunks or a presigned redirect on S3), and the CORS answer a page
of an allowed origin needs. The /hub/ routes and the answers to the public names
(hub_cache.original_names) send through here."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Response, abort, redirect, request, send_file

from hub_cache.conditional import Plan, clean_environ, decide
from hub_cache.formats.base import ModelFormat
from hub_cache.models import ModelManifest, load_model
from mirror.core.accel import accel_redirect, nginx_sends
from mirror.core.context import app_config, app_store
from mirror.core.errors import BlobNotFound
from mirror.core.quarantine import read_quarantine
from mirror.core.served import served_source
from mirror.core.storage import BlobStore, iter_chunks

MAX_FILE_DEPTH = 4  # folders a file of a model folder may be in, below the model


def refuse_quarantined(manifest: ModelManifest) -> None:
    rule = read_quarantine(app_store()).model_rule(manifest.handle, manifest.path)
    if rule is not None:
        abort(410, description=f"{manifest.handle} is quarantined: {rule.reason}")


def folder_file(at: str | None, path: str) -> Response:
    """One file of a model its client reads file by file (`<model>/model.json?tfjs-format=
    file`, then each shard by the path model.json gives it): only a file the model's
    manifest keeps is served, from its own blob."""
    segments = path.strip("/").split("/")
    source = served_source(at)
    for cut in range(1, min(len(segments), MAX_FILE_DEPTH + 1)):
        manifest = load_model(source, "/".join(segments[:-cut]))
        if manifest is None:
            continue
        refuse_quarantined(manifest)
        files = manifest.served_files()
        name = "/".join(segments[-cut:])
        if name not in files:
            break
        sha256, size = files[name]
        missing = f"{manifest.path}: its file {name} is missing from the store"
        return with_cors(send_blob(sha256, size, name.rpartition("/")[2], missing))
    abort(404, description=f"no model file at /hub/{path} on this mirror")


def model_file(manifest: ModelManifest, asked: ModelFormat) -> Response:
    """The model's blob, for the query its format's client asks with (an archive for
    `?tf-hub-format=compressed`, the .tflite for `?lite-format=tflite`); 404 naming the
    right query when the model is of another format."""
    held = manifest.model_format
    if held is not asked:
        name, value = held.served_query if held else ("", "")
        ask = f"; ask ?{name}={value}" if name else ""
        kind = f"a {held.name} model" if held else "a model of a format this mirror does not know"
        abort(404, description=f"{manifest.handle} is {kind}, not a {asked.name}{ask}")
    name = manifest.path.replace("/", "_") + asked.suffix
    missing = f"{manifest.path}: its archive is missing from the store"
    return with_cors(send_blob(manifest.sha256, manifest.size, name, missing))


def send_blob(sha256: str, size: int, name: str, missing: str) -> Response:
    """A blob with Content-Length, its sha256 as ETag, Range and HEAD: a file on disk
    (nginx sends it when it fronts us), else streamed from the store or a presigned URL."""
    store = app_store()
    path = store.local_path(sha256)
    plan = decide(request, sha256, size)
    if isinstance(plan, Response):  # 304, 412, 416: nothing more to send
        return plan
    clean_environ(request, plan)
    if path is not None and nginx_sends(request):
        resp = accel_redirect(sha256, name)
    elif path is not None:
        resp = send_file(
            path,
            mimetype="application/octet-stream",
            etag=sha256,
            conditional=True,
            download_name=name,
        )
    else:
        presigned = store.presigned_url(sha256) if app_config().web.presign_s3 else None
        if presigned is not None:
            return redirect(presigned, code=302)  # type: ignore[return-value]
        resp = _stream_from_store(store, sha256, size, plan, missing)
    resp.headers["Cache-Control"] = "public, max-age=3600"
    return resp


def with_cors(resp: Response) -> Response:
    """Let a page of an origin [web] cors_origins lists read it (a TF.js app elsewhere)."""
    allowed = app_config().web.cors_origins
    origin = request.headers.get("Origin", "")
    if "*" in allowed:
        resp.headers["Access-Control-Allow-Origin"] = "*"
    elif allowed:
        # Whatever this origin got, another may get otherwise: a cache in between
        # (nginx's file cache, a browser's) must keep one answer per origin.
        resp.headers.add("Vary", "Origin")
        if origin in allowed:
            resp.headers["Access-Control-Allow-Origin"] = origin
    return resp


def _stream_from_store(
    store: BlobStore, sha256: str, size: int, plan: Plan, missing: str
) -> Response:
    """Stream a blob out of a store with no local file (S3), the planned range only;
    503 saying `missing` if the store lacks it."""
    body: Iterator[bytes] = iter(())
    if request.method != "HEAD":
        try:
            if plan.partial:
                length = plan.end - plan.start
                body = iter_chunks(store.open_range(sha256, plan.start, length))
            else:
                body = iter_chunks(store.open_blob(sha256))
        except BlobNotFound:
            abort(503, description=missing)
    resp = Response(body, status=206 if plan.partial else 200, mimetype="application/octet-stream")
    resp.headers["Content-Length"] = str(plan.end - plan.start)
    resp.headers["Accept-Ranges"] = "bytes"
    if plan.partial:
        resp.headers["Content-Range"] = f"bytes {plan.start}-{plan.end - 1}/{size}"
    resp.set_etag(sha256)
    return resp
