"""PEP 503/691 simple pages over the verified store: devpi's mirror_url points here.

Only files some manifest lists are offered, so devpi can never hold or serve a file the
mirror has not verified and committed.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Mapping

from flask import Blueprint, Flask, Response, abort, request, send_file
from packaging.utils import canonicalize_name

from mirror.core.config import Config
from mirror.core.context import app_store, bind, json_errors
from mirror.core.storage import BlobNotFound, BlobStore, iter_chunks
from mirror.core.upstream import PEP691_JSON
from mirror.pypi.manifest import published_files
from mirror.pypi.resolve import Wheel

PEP691_HTML = "application/vnd.pypi.simple.v1+html"

blueprint = Blueprint("pypi", __name__)


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match([PEP691_JSON, PEP691_HTML, "text/html"])
    return best == PEP691_JSON


def _respond(doc: Mapping[str, object], page: str) -> Response:
    body, kind = (json.dumps(doc), PEP691_JSON) if _wants_json() else (page, PEP691_HTML)
    resp = Response(body, content_type=kind)
    resp.set_etag(hashlib.sha256(body.encode()).hexdigest()[:32])
    resp.headers["Vary"] = "Accept"
    resp.make_conditional(request)
    return resp


def _page(title: str, links: list[str]) -> str:
    body = "\n".join(links)
    return (
        '<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.1">'
        f"<title>{html.escape(title)}</title></head><body>\n{body}\n</body></html>\n"
    )


@blueprint.get("/simple/")
def project_list() -> Response:
    names = sorted(_published())
    doc = {"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in names]}
    links = [f'<a href="{html.escape(n)}/">{html.escape(n)}</a>' for n in names]
    return _respond(doc, _page("Simple index", links))


@blueprint.get("/simple/<project>/")
def project_page(project: str) -> Response:
    name = canonicalize_name(project)
    files = _published().get(name)
    if not files:
        abort(404, description=f"{project} is not mirrored here")
    wheels = sorted(files.values(), key=lambda w: w.filename)
    doc = {
        "meta": {"api-version": "1.1"},
        "name": name,
        "versions": sorted({w.version for w in wheels}),
        "files": [
            {
                "filename": w.filename,
                "url": _file_url(w),
                "hashes": {"sha256": w.sha256},
                "size": w.size,
            }
            for w in wheels
        ],
    }
    links = [
        f'<a href="{html.escape(_file_url(w))}#sha256={w.sha256}">{html.escape(w.filename)}</a>'
        for w in wheels
    ]
    return _respond(doc, _page(f"Links for {name}", links))


def _file_url(wheel: Wheel) -> str:
    return f"../../files/{wheel.sha256}/{wheel.filename}"


@blueprint.get("/files/<sha256>/<filename>")
def file(sha256: str, filename: str) -> Response:
    store = app_store()
    if not any(
        filename in files and files[filename].sha256 == sha256 for files in _published().values()
    ):
        abort(404, description=f"{filename} with sha256 {sha256} is not mirrored here")
    path = store.local_path(sha256)
    if path is not None:
        resp = send_file(
            path,
            mimetype="application/octet-stream",
            etag=sha256,
            download_name=filename,
            conditional=True,
        )
    else:
        try:
            reader = store.open_blob(sha256)
        except BlobNotFound:
            abort(404, description=f"{filename} is listed but its blob is missing")
        resp = Response(iter_chunks(reader), mimetype="application/octet-stream")
        size = store.blob_size(sha256)
        if size is not None:
            resp.headers["Content-Length"] = str(size)
        resp.set_etag(sha256)
    resp.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return resp


def _published() -> dict[str, dict[str, Wheel]]:
    return published_files(app_store())


def simple_pages_app(config: Config, store: BlobStore) -> Flask:
    """Only the simple pages devpi mirrors from: what a sync needs up, and no more."""
    app = bind(Flask("tfmirror-simple"), config, store)
    app.register_blueprint(blueprint)
    json_errors(app)
    return app
