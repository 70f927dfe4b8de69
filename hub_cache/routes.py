"""The hub side of the web front: serves model archives to the unmodified tensorflow_hub.

`hub.load("http://mirror/hub/google/.../5")` GETs `/hub/google/.../5?tf-hub-format=compressed`.
Archives stream from the store (a sendfile on local disk; chunks or a presigned
redirect on S3) with Content-Length, the sha256 as ETag, Range and HEAD.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, abort, jsonify, redirect, request, send_file

from hub_cache.models import ModelManifest, load_model, load_models
from mirror.core.context import app_config, app_store
from mirror.core.storage import BlobNotFound, BlobStore, iter_chunks

blueprint = Blueprint("hub", __name__)


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _base() -> str:
    return request.host_url.rstrip("/")


def model_json(manifest: ModelManifest, base: str) -> dict[str, Any]:
    mirror_handle = f"{base}/hub/{manifest.path}"
    return {
        "handle": manifest.handle,
        "mirror_handle": mirror_handle,
        "path": manifest.path,
        "sha256": manifest.sha256,
        "size": manifest.size,
        "synced_at": manifest.synced_at,
        "source": manifest.source,
        "archive": manifest.archive,
        "usage": {
            "hub_load": f'hub.load("{mirror_handle}")',
            "prefetch": f"tfmirror hub prefetch {manifest.handle} --cache-dir DIR --mirror {base}",
        },
    }


@blueprint.get("/hub/")
def model_list() -> Response:
    models = [model_json(m, _base()) for m in load_models(app_store())]
    if _wants_json():
        return jsonify(models=models)
    rows = "".join(
        f'<tr><td><a href="{html.escape(m["path"])}">{html.escape(m["handle"])}</a></td>'
        f"<td>{m['size'] / 1e6:.1f} MB</td><td><code>{m['sha256']}</code></td>"
        f"<td>{html.escape(m['synced_at'])}</td></tr>"
        for m in models
    )
    body = (
        f"<table><tr><th>handle</th><th>size</th><th>sha256</th><th>synced</th></tr>{rows}</table>"
        if models
        else "<p>No models mirrored yet: add handles to [hub] models and run "
        "<code>tfmirror sync hub</code>.</p>"
    )
    return _page("TF Hub models on this mirror", body)


@blueprint.get("/hub/<path:path>")
def model(path: str) -> Response:
    manifest = load_model(app_store(), path.strip("/"))
    if manifest is None:
        abort(404, description=f"no model at /hub/{path} on this mirror; /hub/ lists them")
    if request.args.get("tf-hub-format") == "compressed":
        return _archive(manifest)
    info = model_json(manifest, _base())
    if _wants_json():
        return jsonify(info)
    facts = manifest.archive
    offline_load = f'hub.load("{manifest.handle}")'
    body = f"""
<dl>
<dt>handle</dt><dd><code>{html.escape(manifest.handle)}</code></dd>
<dt>on this mirror</dt><dd><code>{html.escape(info["mirror_handle"])}</code></dd>
<dt>size</dt><dd>{manifest.size / 1e6:.1f} MB ({facts.get("files", "?")} files,
{facts.get("uncompressed_size", 0) / 1e6:.1f} MB unpacked)</dd>
<dt>sha256</dt><dd><code>{manifest.sha256}</code></dd>
<dt>synced at</dt><dd>{html.escape(manifest.synced_at)}</dd>
</dl>
{_signatures(manifest.signatures)}
<h2>Use it</h2>
<p>Load it through the mirror:</p>
<pre>import tensorflow_hub as hub
model = hub.load("{html.escape(info["mirror_handle"])}")</pre>
<p>Or keep the original handle and fill the cache ahead of time:</p>
<pre>{html.escape(info["usage"]["prefetch"])}
TFHUB_CACHE_DIR=DIR python -c 'import tensorflow_hub as hub; {html.escape(offline_load)}'</pre>
"""
    return _page(manifest.handle, body)


def _signatures(signatures: dict[str, Any]) -> str:
    if not signatures:
        return "<p>Signatures: not checked yet (<code>tfmirror verify --deep</code>).</p>"
    rows = []
    for name, sig in sorted(signatures.items()):
        for side in ("inputs", "outputs"):
            for key, spec in sig[side].items():
                rows.append(
                    f"<tr><td>{html.escape(name)}</td><td>{side[:-1]}</td>"
                    f"<td>{html.escape(key)}</td><td>{html.escape(str(spec['dtype']))}</td>"
                    f"<td>{html.escape(str(spec['shape']))}</td></tr>"
                )
    return (
        "<h2>Signatures</h2><table><tr><th>signature</th><th></th><th>name</th>"
        f"<th>dtype</th><th>shape</th></tr>{''.join(rows)}</table>"
    )


# Set by the tfmirror proxy (nginx) on every request it forwards when it can read the
# store's blobs/sha256 folder itself, under this internal location. Only this exact value
# counts, so a header from anyone else can never point nginx at another folder.
ACCEL_HEADER = "X-Tfmirror-Accel-Blobs"
ACCEL_PREFIX = "/_tfmirror/blobs/"


def _archive(manifest: ModelManifest) -> Response:
    store = app_store()
    path = store.local_path(manifest.sha256)
    name = manifest.path.replace("/", "_") + ".tar.gz"
    if path is not None and request.headers.get(ACCEL_HEADER) == ACCEL_PREFIX:
        resp = _accel_redirect(manifest, name)
    elif path is not None:
        resp = send_file(
            path,
            mimetype="application/octet-stream",
            etag=manifest.sha256,
            conditional=True,
            download_name=name,
        )
    else:
        presigned = store.presigned_url(manifest.sha256) if app_config().web.presign_s3 else None
        if presigned is not None:
            return redirect(presigned, code=302)  # type: ignore[return-value]
        resp = _stream_from_store(store, manifest)
    resp.headers["Cache-Control"] = "public, max-age=3600"
    return resp


def _accel_redirect(manifest: ModelManifest, name: str) -> Response:
    """Let nginx send the blob file (sendfile, Range, HEAD, thousands of slow clients);
    the conditional requests are answered here, where the sha256 is known."""
    resp = Response(status=200, mimetype="application/octet-stream")
    resp.set_etag(manifest.sha256)
    resp.headers["Content-Disposition"] = f"attachment; filename={name}"
    resp.make_conditional(request)
    if resp.status_code == 200:
        resp.headers["X-Accel-Redirect"] = f"{ACCEL_PREFIX}{manifest.sha256[:2]}/{manifest.sha256}"
    return resp


def _stream_from_store(store: BlobStore, manifest: ModelManifest) -> Response:
    """Stream an archive out of a store with no local file (S3), Range included."""
    wanted = request.range.range_for_length(manifest.size) if request.range else None
    start, end = wanted if wanted else (0, manifest.size)
    body: Iterator[bytes] = iter(())
    if request.method != "HEAD":
        try:
            if wanted:
                body = iter_chunks(store.open_range(manifest.sha256, start, end - start))
            else:
                body = iter_chunks(store.open_blob(manifest.sha256))
        except BlobNotFound:
            abort(503, description=f"{manifest.path}: its archive is missing from the store")
    resp = Response(body, status=206 if wanted else 200, mimetype="application/octet-stream")
    resp.headers["Content-Length"] = str(end - start)
    resp.headers["Accept-Ranges"] = "bytes"
    if wanted:
        resp.headers["Content-Range"] = f"bytes {start}-{end - 1}/{manifest.size}"
    resp.set_etag(manifest.sha256)
    return resp


def _page(title: str, body: str) -> Response:
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}code,pre{background:#f4f4f4}"
        "td,th{padding:.2em .8em;text-align:left}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}<p><a href='/hub/'>all models</a></p></body></html>"
    )
    return Response(page, content_type="text/html; charset=utf-8")
