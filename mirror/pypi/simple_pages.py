"""PEP 503/691/700 simple pages over the verified store.

`/simple/` is what devpi's mirror_url points at, with files from the store; the fleet's
own index (tfmirror.fleet_index) renders the same pages with links to devpi's files. Only
files some manifest lists are offered, so devpi can never hold or serve a file the
mirror has not verified and committed.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Callable, Iterable, Mapping

from flask import Blueprint, Flask, Response, abort, request, send_file
from packaging.utils import canonicalize_name

from mirror.core.config import Config
from mirror.core.context import app_store, bind, json_errors
from mirror.core.quarantine import read_quarantine
from mirror.core.snapshots import FrozenDocuments
from mirror.core.storage import BlobNotFound, BlobStore, DocumentReader, iter_chunks
from mirror.core.timestamps import rfc3339_utc
from mirror.core.upstream import PEP691_JSON
from mirror.pypi.manifest import published_files
from mirror.pypi.resolve import Wheel
from mirror.pypi.upstream_status import read_statuses

PEP691_HTML = "application/vnd.pypi.simple.v1+html"

blueprint = Blueprint("pypi", __name__)


# What a client may ask for (PEP 691), and the Content-Type it gets: pip before 22.2
# asks for text/html and refuses any other type ("The only supported Content-Type is
# text/html"); the "latest" aliases name version 1.
_ANSWERS = {
    PEP691_HTML: PEP691_HTML,
    "application/vnd.pypi.simple.latest+html": PEP691_HTML,
    "text/html": "text/html; charset=utf-8",
    PEP691_JSON: PEP691_JSON,
    "application/vnd.pypi.simple.latest+json": PEP691_JSON,
}


def _content_type() -> str:
    # On a tie (*/*, a browser, curl) HTML, as PyPI does; pip and uv rank JSON first.
    best = request.accept_mimetypes.best_match(list(_ANSWERS), default=PEP691_HTML)
    return _ANSWERS[best or PEP691_HTML]


def _respond(doc: Mapping[str, object], page: str) -> Response:
    kind = _content_type()
    body = json.dumps(doc) if kind == PEP691_JSON else page
    resp = Response(body, content_type=kind)
    resp.set_etag(hashlib.sha256(body.encode()).hexdigest()[:32])
    resp.headers["Vary"] = "Accept"
    resp.make_conditional(request)
    return resp


def _page(title: str, links: list[str], meta: str = "") -> str:
    body = "\n".join(links)
    version = "1.4" if meta else "1.1"
    return (
        f'<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="{version}">'
        f"{meta}<title>{html.escape(title)}</title></head><body>\n{body}\n</body></html>\n"
    )


def project_list(names: list[str]) -> Response:
    doc = {"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in names]}
    links = [f'<a href="{html.escape(n)}/">{html.escape(n)}</a>' for n in names]
    return _respond(doc, _page("Simple index", links))


def _file_doc(wheel: Wheel, url: str) -> dict[str, object]:
    doc: dict[str, object] = {
        "filename": wheel.filename,
        "url": url,
        "hashes": {"sha256": wheel.sha256},
        "size": wheel.size,
    }
    # Normalised again for manifests written before the mirror normalised it.
    if upload_time := rfc3339_utc(wheel.upload_time):
        doc["upload-time"] = upload_time
    if wheel.requires_python:
        doc["requires-python"] = wheel.requires_python
    if wheel.metadata_sha256:
        # PEP 714's name only: pip 22.3 to 23.0 crash on a dict under PEP 658's old
        # "dist-info-metadata" key (the reason for PEP 714; PyPI sends only this one).
        doc["core-metadata"] = {"sha256": wheel.metadata_sha256}
    if wheel.yanked is not False:
        doc["yanked"] = wheel.yanked
    if (built := wheel.built_from) is not None:
        # PEP 691 keeps keys with a leading underscore for the index's own use.
        doc["_tfmirror-built-from"] = {
            "sdist": built.sdist,
            "sha256": built.sdist_sha256,
            "python": built.python,
        }
    return doc


def _file_link(wheel: Wheel, url: str) -> str:
    attrs = [f'href="{html.escape(url)}#sha256={wheel.sha256}"']
    if wheel.requires_python:
        attrs.append(f'data-requires-python="{html.escape(wheel.requires_python)}"')
    if wheel.metadata_sha256:
        spec = f"sha256={wheel.metadata_sha256}"
        attrs.append(f'data-core-metadata="{spec}" data-dist-info-metadata="{spec}"')
    if wheel.yanked is not False:
        reason = wheel.yanked if isinstance(wheel.yanked, str) else ""
        attrs.append(f'data-yanked="{html.escape(reason)}"')
    if (built := wheel.built_from) is not None:
        attrs.append(f'data-tfmirror-built-from="{html.escape(built.sdist)}"')
    return f"<a {' '.join(attrs)}>{html.escape(wheel.filename)}</a>"


def project_page(name: str, files: Iterable[Wheel], file_url: Callable[[Wheel], str]) -> Response:
    """One project's page (PEP 503/691/700): every fact installers read about each file."""
    wheels = sorted(files, key=lambda w: w.filename)
    doc: dict[str, object] = {
        "meta": {"api-version": "1.1"},
        "name": name,
        "versions": sorted({w.version for w in wheels}),
        "files": [_file_doc(w, file_url(w)) for w in wheels],
    }
    meta = ""
    status = read_statuses(app_store()).get(name)
    if status:
        # PEP 792, passed on from upstream: archived (no more releases) or deprecated.
        doc["meta"] = {"api-version": "1.4"}
        doc["project-status"] = status
        meta = f'<meta name="pypi:project-status" content="{html.escape(status["status"])}">'
        if status.get("reason"):
            reason = html.escape(status["reason"])
            meta += f'<meta name="pypi:project-status-reason" content="{reason}">'
    links = [_file_link(w, file_url(w)) for w in wheels]
    return _respond(doc, _page(f"Links for {name}", links, meta))


def published_project(
    project: str, environment: str | None = None, source: DocumentReader | None = None
) -> tuple[str, list[Wheel]]:
    """A project's mirrored files (in every environment, or in one; live, or in a
    snapshot), or 404."""
    name = canonicalize_name(project)
    files = published(environment, source).get(name)
    if not files:
        where = f" in environment {environment}" if environment else ""
        if isinstance(source, FrozenDocuments):
            where += f" in snapshot {source.snapshot.name}"
        abort(404, description=f"{project} is not mirrored here{where}")
    return name, list(files.values())


@blueprint.get("/simple/")
def devpi_project_list() -> Response:
    return project_list(sorted(published()))


@blueprint.get("/simple/<project>/")
def devpi_project_page(project: str) -> Response:
    return project_page(*published_project(project), file_url=_file_url)


def _file_url(wheel: Wheel) -> str:
    return f"../../files/{wheel.sha256}/{wheel.filename}"


@blueprint.get("/files/<sha256>/<filename>")
def file(sha256: str, filename: str) -> Response:
    refuse_quarantined(filename)
    if not any(
        filename in files and files[filename].sha256 == sha256 for files in published().values()
    ):
        abort(404, description=f"{filename} with sha256 {sha256} is not mirrored here")
    return blob_response(sha256, filename)


def metadata_response(filename: str, sources: Iterable[DocumentReader] = ()) -> Response:
    """A mirrored wheel's METADATA file (PEP 658), from its own blob: a live file's, or
    one a snapshot in `sources` holds."""
    for source in [app_store(), *sources]:
        for files in published(source=source).values():
            wheel = files.get(filename)
            if wheel is not None and wheel.metadata_sha256:
                return blob_response(wheel.metadata_sha256, f"{filename}.metadata")
    abort(404, description=f"{filename} has no core metadata here")


def blob_response(sha256: str, filename: str) -> Response:
    """An immutable blob, named `filename`: zero-copy from disk where the store has it."""
    store = app_store()
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


def published(
    environment: str | None = None, source: DocumentReader | None = None
) -> dict[str, dict[str, Wheel]]:
    """The union of every environment's files, or one environment's, live (`source`
    None) or as a snapshot holds them: the views an index is rendered from. A
    quarantined file is on none of them, a snapshot's included."""
    store = app_store()
    if isinstance(source, FrozenDocuments):
        frozen = source
        files = frozen.memo(
            ("published", environment), lambda: published_files(frozen, environment)
        )
    else:
        files = published_files(source or store, environment)
    quarantine = read_quarantine(store)
    if not quarantine.rules:
        return files
    offered = {}
    for project, by_name in files.items():
        kept = {
            name: w
            for name, w in by_name.items()
            if quarantine.file_rule(w.project, w.version, w.filename) is None
        }
        if kept:
            offered[project] = kept
    return offered


def refuse_quarantined(filename: str) -> None:
    """410 Gone, with the reason, for a quarantined file: however a node asks for it."""
    rule = read_quarantine(app_store()).rule_for_file(filename.removesuffix(".metadata"))
    if rule is not None:
        abort(410, description=f"{filename} is quarantined: {rule.reason}")


def simple_pages_app(config: Config, store: BlobStore) -> Flask:
    """Only the simple pages devpi mirrors from: what a sync needs up, and no more."""
    app = bind(Flask("tfmirror-simple"), config, store)
    app.register_blueprint(blueprint)
    json_errors(app)
    return app
