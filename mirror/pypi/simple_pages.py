"""PEP 503/691/700 simple pages over the verified store. `/simple/` is what devpi's
mirror_url points at, with files from the store; the fleet's own index
(tfmirror.fleet_index) renders the same pages with links to devpi's files. Only files
some manifest lists are offered, so devpi can never hold or serve a file the mirror has
not verified and committed. A front keeps each view of the live manifests as parsed for
their version (their stamps, listed on every request) and each page as rendered for what
it shows: an unchanged mirror's pages cost neither, and a commit shows on the next
request."""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping

from flask import Blueprint, Flask, Response, abort, request, send_file
from packaging.utils import canonicalize_name
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from mirror.core.config import Config
from mirror.core.context import app_store, bind, json_errors
from mirror.core.errors import BlobNotFound
from mirror.core.pages import render
from mirror.core.quarantine import read_quarantine
from mirror.core.snapshots import FrozenDocuments
from mirror.core.storage import BlobStore, DocumentReader, iter_chunks
from mirror.core.timestamps import rfc3339_utc
from mirror.core.upstream import PEP691_JSON
from mirror.pypi.manifest import PYPI_MANIFESTS, published_files
from mirror.pypi.resolve import Wheel
from mirror.pypi.upstream_status import read_statuses

PEP691_HTML = "application/vnd.pypi.simple.v1+html"

Published = dict[str, dict[str, Wheel]]  # canonical project -> filename -> its file

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
    return _answer_for(request.headers.get("Accept", ""))


@functools.lru_cache(maxsize=256)
def _answer_for(accept: str) -> str:
    # Kept per Accept header (pip, uv and browsers each send one of a few): parsing it
    # cost a tenth of a page. On a tie (*/*, a browser, curl) HTML, as PyPI does; pip
    # and uv rank JSON first.
    best = parse_accept_header(accept, MIMEAccept).best_match(list(_ANSWERS), default=PEP691_HTML)
    return _ANSWERS[best or PEP691_HTML]


class _Rendered:
    """Each page's body and ETag, made once for what it shows (its files with their
    links, its project status: the key), so a page of an unchanged mirror costs no
    rendering; a commit changes the key, never a kept page."""

    LIMIT = 4096  # pages kept; past it, the oldest is dropped (made again if asked)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bodies: dict[Hashable, tuple[str, str]] = {}

    def body(self, key: Hashable, make: Callable[[], str]) -> tuple[str, str]:
        with self._lock:
            found = self._bodies.get(key)
        if found is None:
            body = make()
            found = (body, hashlib.sha256(body.encode()).hexdigest()[:32])
            with self._lock:
                if len(self._bodies) >= self.LIMIT:
                    del self._bodies[next(iter(self._bodies))]
                self._bodies[key] = found
        return found


_RENDERED = _Rendered()


def _respond(
    shows: Hashable, doc: Callable[[], Mapping[str, object]], page: Callable[[], str]
) -> Response:
    """The page in the type the client asked for; `shows` is everything the page is made
    from (doc and page are made only when no page for it is kept)."""
    kind = _content_type()
    body, etag = _RENDERED.body(
        (kind, shows), (lambda: json.dumps(doc())) if kind == PEP691_JSON else page
    )
    resp = Response(body, content_type=kind)
    resp.set_etag(etag)
    resp.headers["Vary"] = "Accept"
    resp.make_conditional(request)
    return resp


def project_list(names: list[str]) -> Response:
    shown = tuple(names)

    def doc() -> dict[str, object]:
        return {"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in shown]}

    def page() -> str:
        return render("mirror.pypi/simple_index.html", names=shown)

    return _respond(("list", shown), doc, page)


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


def project_page(name: str, files: Iterable[Wheel], file_url: Callable[[Wheel], str]) -> Response:
    """One project's page (PEP 503/691/700): every fact installers read about each file."""
    linked = tuple((w, file_url(w)) for w in sorted(files, key=lambda w: w.filename))
    # PEP 792, passed on from upstream: archived (no more releases) or deprecated.
    status = read_statuses(app_store()).get(name)
    status_shown = json.dumps(status, sort_keys=True) if status else ""

    def doc() -> dict[str, object]:
        shown: dict[str, object] = {
            "meta": {"api-version": "1.4" if status else "1.1"},
            "name": name,
            "versions": sorted({w.version for w, _ in linked}),
            "files": [_file_doc(w, url) for w, url in linked],
        }
        if status:
            shown["project-status"] = status
        return shown

    def page() -> str:
        return render("mirror.pypi/simple_project.html", name=name, files=linked, status=status)

    return _respond(("project", name, status_shown, linked), doc, page)


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


def published(environment: str | None = None, source: DocumentReader | None = None) -> Published:
    """The union of every environment's files, or one environment's, live (`source`
    None) or as a snapshot holds them: the views an index is rendered from. A
    quarantined file is on none of them, a snapshot's included."""
    store = app_store()
    if isinstance(source, FrozenDocuments):
        frozen = source
        files = frozen.memo(
            ("published", environment), lambda: published_files(frozen, environment)
        )
    elif source is None or source is store:
        files = _LIVE_VIEWS.files(store, environment)
    else:
        files = published_files(source, environment)
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


class _AtStamps:
    """The live manifests as one listing of their stamps found them, each document read
    through `views` (once per stamp)."""

    def __init__(self, store: BlobStore, stamps: Mapping[str, str], views: _LiveViews) -> None:
        self._store = store
        self._stamps = stamps
        self._views = views

    def get(self, key: str) -> bytes | None:
        stamp = self._stamps.get(key)
        return None if stamp is None else self._views.document(self._store, key, stamp)

    def list(self, prefix: str) -> list[str]:
        folder = prefix.rstrip("/") + "/"
        return sorted(k for k in self._stamps if k.startswith(folder))


class _LiveViews:
    """Each view of the live manifests (the union, each environment), parsed once per
    version of the manifests: every request lists their stamps (mirror.core.storage; one
    listing, no document read) and a view is made again only when one changed, so a
    commit shows on the next page while an unchanged mirror's pages cost no parsing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._documents: dict[tuple[str, str, str], bytes] = {}  # (store, key, stamp)
        self._views: dict[tuple[str, str | None], tuple[dict[str, str], Published]] = {}

    def files(self, store: BlobStore, environment: str | None) -> Published:
        stamps = store.stamps(PYPI_MANIFESTS)
        where = store.describe()
        with self._lock:
            kept = self._views.get((where, environment))
            if kept is not None and kept[0] == stamps:
                return kept[1]
            for gone in [k for k in self._documents if k[0] == where and stamps.get(k[1]) != k[2]]:
                del self._documents[gone]  # replaced or deleted: never asked for again
        files = published_files(_AtStamps(store, stamps, self), environment)
        with self._lock:
            self._views[(where, environment)] = (stamps, files)
        return files

    def document(self, store: BlobStore, key: str, stamp: str) -> bytes | None:
        where = store.describe()
        with self._lock:
            found = self._documents.get((where, key, stamp))
        if found is None:
            found = store.get(key)
            if found is None:
                return None  # deleted since the listing
            # Read after the listing, so never older than the stamp it is kept under.
            with self._lock:
                self._documents[(where, key, stamp)] = found
        return found


_LIVE_VIEWS = _LiveViews()


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
