"""The hub side of the web front: serves models to their unmodified clients.
`hub.load("http://mirror/hub/google/.../5")` GETs
`/hub/google/.../5?tf-hub-format=compressed`; each other format is served at the query
its client asks with (`?lite-format=tflite`; TF.js file by file, `<model>/<file>?
tfjs-format=file`: hub_cache.formats). `/hub/@<NAME>/google/.../5` is the model as
snapshot NAME holds it, `/hub/@live/...` as the last sync left it, and the plain path
what is promoted (the live mirror when no snapshot is): mirror.core.served decides, for
pages and models alike. Blobs stream from the store (a sendfile on local disk; chunks or
a presigned redirect on S3) with Content-Length, the sha256 as ETag, Range and HEAD."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    jsonify,
    redirect,
    request,
    send_file,
)

from hub_cache.compat_matrix import Pair, model_matrix, read_matrix
from hub_cache.conditional import Plan, clean_environ, decide
from hub_cache.formats import served_by_query
from hub_cache.formats.base import TFHUB_CACHE, ModelFormat
from hub_cache.formats.tfjs import FILE_QUERY
from hub_cache.models import ModelManifest, load_model, load_models
from mirror.core.accel import accel_redirect, nginx_sends
from mirror.core.context import app_config, app_public_url, app_store
from mirror.core.errors import BlobNotFound
from mirror.core.kaggle import parse_kaggle_path
from mirror.core.pages import render
from mirror.core.quarantine import read_quarantine
from mirror.core.redact import redact_url
from mirror.core.served import served_source
from mirror.core.storage import BlobStore, iter_chunks

blueprint = Blueprint("hub", __name__)

MAX_FILE_DEPTH = 4  # folders a file of a model folder may be in, below the model


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _base() -> str:
    return app_public_url()


def _split_at(path: str) -> tuple[str | None, str]:
    """`@NAME/rest` -> (NAME, rest); a handle's segments never start with `@`."""
    if path.startswith("@"):
        at, _, rest = path[1:].partition("/")
        return at, rest
    return None, path


def model_json(
    manifest: ModelManifest, base: str, at: str | None, matrix: list[Pair]
) -> dict[str, Any]:
    hub = f"{base}/hub/" + (f"@{at}/" if at else "")
    mirror_handle = f"{hub}{manifest.path}"
    return {
        "handle": manifest.handle,
        "mirror_handle": mirror_handle,
        "path": manifest.path,
        "sha256": manifest.sha256,
        "size": manifest.size,
        "synced_at": manifest.synced_at,
        "source": redact_url(manifest.source),
        "archive": manifest.archive,
        # Which environment's runtime loads it, as last checked (verify.compat).
        "environments": {
            env: {k: v for k, v in pair.as_json().items() if k not in ("model", "environment")}
            for env, pair in model_matrix(matrix, manifest).items()
        },
        "usage": _usage(manifest, mirror_handle, base),
    }


def _usage(manifest: ModelManifest, mirror_handle: str, base: str) -> dict[str, str]:
    """How a client loads it, as its format says, and how to prefetch it where it can."""
    model_format = manifest.model_format
    usage = model_format.usage(mirror_handle) if model_format else {}
    if model_format is None or TFHUB_CACHE in model_format.caches:
        usage["prefetch"] = (
            f"tfmirror hub prefetch {manifest.handle} --cache-dir DIR --mirror {base}"
        )
    return usage


def _loads(manifest: ModelManifest, mirror_handle: str) -> list[str]:
    """The code that loads it through the mirror, as its format says, for its page."""
    model_format = manifest.model_format
    if model_format is None:
        return []
    imports = model_format.client_import
    return [f"{imports}\nmodel = {code}" for code in model_format.usage(mirror_handle).values()]


@blueprint.get("/hub/")
def model_list(at: str | None = None) -> Response | str:
    store = app_store()
    quarantine = read_quarantine(store)
    models = [
        m for m in load_models(served_source(at)) if quarantine.model_rule(m.handle, m.path) is None
    ]
    if _wants_json():
        matrix = read_matrix(store)  # once for the whole list
        return jsonify(models=[model_json(m, _base(), at, matrix) for m in models])
    title = "TF Hub models on this mirror" + (f" (@{at})" if at else "")
    return render("hub_cache/models.html", title=title, models=models, at=at)


@blueprint.get("/hub/<path:path>")
def model(path: str) -> Response | str:
    at, path = _split_at(path)
    if at is not None and not path.strip("/"):
        return model_list(at)
    if request.args.get(FILE_QUERY[0]) == FILE_QUERY[1]:
        return _folder_file(at, path)
    kaggle = parse_kaggle_path(path)  # any spelling of a Kaggle model: its one path
    manifest = load_model(served_source(at), kaggle.path if kaggle else path.strip("/"))
    if manifest is None:
        where = f" in snapshot {at}" if at else ""
        abort(404, description=f"no model at /hub/{path}{where} on this mirror; /hub/ lists them")
    _refuse_quarantined(manifest)
    asked = served_by_query(request.args)
    if asked is not None:
        return _model_file(manifest, asked)
    info = model_json(manifest, _base(), at, read_matrix(app_store()))
    if _wants_json():
        return jsonify(info)
    loads = _loads(manifest, info["mirror_handle"])
    return render(
        "hub_cache/model.html", title=manifest.handle, model=manifest, info=info, loads=loads
    )


def _refuse_quarantined(manifest: ModelManifest) -> None:
    rule = read_quarantine(app_store()).model_rule(manifest.handle, manifest.path)
    if rule is not None:
        abort(410, description=f"{manifest.handle} is quarantined: {rule.reason}")


def _folder_file(at: str | None, path: str) -> Response:
    """One file of a model its client reads file by file (`<model>/model.json?tfjs-format=
    file`, then each shard by the path model.json gives it): only a file the model's
    manifest keeps is served, from its own blob."""
    segments = path.strip("/").split("/")
    source = served_source(at)
    for cut in range(1, min(len(segments), MAX_FILE_DEPTH + 1)):
        manifest = load_model(source, "/".join(segments[:-cut]))
        if manifest is None:
            continue
        _refuse_quarantined(manifest)
        files = manifest.served_files()
        name = "/".join(segments[-cut:])
        if name not in files:
            break
        sha256, size = files[name]
        missing = f"{manifest.path}: its file {name} is missing from the store"
        return _with_cors(_send_blob(sha256, size, name.rpartition("/")[2], missing))
    abort(404, description=f"no model file at /hub/{path} on this mirror")


def _model_file(manifest: ModelManifest, asked: ModelFormat) -> Response:
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
    return _with_cors(_send_blob(manifest.sha256, manifest.size, name, missing))


def _send_blob(sha256: str, size: int, name: str, missing: str) -> Response:
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


def _with_cors(resp: Response) -> Response:
    """Let a page of an origin [web] cors_origins lists read it (a TF.js app elsewhere)."""
    allowed = app_config().web.cors_origins
    origin = request.headers.get("Origin", "")
    if "*" in allowed:
        resp.headers["Access-Control-Allow-Origin"] = "*"
    elif origin and origin in allowed:
        resp.headers["Access-Control-Allow-Origin"] = origin
        resp.headers.add("Vary", "Origin")
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
