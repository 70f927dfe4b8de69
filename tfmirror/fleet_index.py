"""The index the fleet reads: the `index-url` that `tfmirror pip-conf` prints.

devpi 6.20.3 (the newest) serves PEP 691 JSON as api-version 1.0 with no upload-time, no
size and no core-metadata hash, so uv's --exclude-newer refuses every file through it.
These pages are rendered from the manifests instead, with every PEP 691/700/658/592
fact, at devpi's own path (`/<user>/<index>/+simple/`); the files they link are at
devpi's path (`../../+f/...`). nginx sends one from devpi's serverdir where devpi holds
it, else from the store's own blob file (a front names it, nginx sends it), so the fleet
installs a closure the moment it is committed, while devpi still pulls its copies (and
with devpi down). A request for a file that reaches a front with no nginx in front is
sent on to devpi; a wheel's `.metadata` is the front's own.

Each environment is an index of its own beside the union, `/<user>/<environment>/+simple/`,
offering only its closures, so a serving node cannot drift to another environment's
TensorFlow. devpi holds every file once, in the union index; an environment's pages link
to the union's files (`../../../<union>/+f/...`).

Each snapshot (mirror.core.snapshots) is served beside them as `/<user>/<index>/@<NAME>/+simple/`
for the union and every environment: a path segment of its own, so a node's index-url
names it, pip and uv take it as any URL (`@` is allowed in a path; only the part before
the first `/` holds credentials), and no devpi index can be confused with it (devpi's
index names allow no `@`). `@live` is always the live mirror; the plain paths serve
what is promoted (`tfmirror snapshot promote`), the live mirror when nothing is. A
snapshot's pages link to the same file URLs as the live pages (one cached copy per file),
and a file some snapshot holds is served though the live mirror no longer lists it.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from flask import Blueprint, Response, abort, redirect, request
from packaging.utils import canonicalize_name

from mirror.core.accel import accel_redirect, nginx_sends
from mirror.core.context import app_config, app_store
from mirror.core.served import served_source
from mirror.core.snapshots import FrozenDocuments, snapshot_readers
from mirror.core.storage import DocumentReader
from mirror.devpi.publish import devpi_file_relpath
from mirror.pypi.manifest import stored_environments
from mirror.pypi.resolve import Wheel
from mirror.pypi.simple_pages import (
    blob_response,
    metadata_response,
    project_list,
    project_page,
    published,
    published_project,
    refuse_quarantined,
)

blueprint = Blueprint("fleet_index", __name__)


def _view(user: str, index: str, source: DocumentReader) -> str | None:
    """Which selection of the manifests an index path shows: None for the union, else
    the environment's name; 404 for an index this mirror does not have."""
    config = app_config()
    devpi = config.devpi
    if f"{user}/{index}" == devpi.index:
        return None
    if user == devpi.user:
        wanted = canonicalize_name(index)
        names = stored_environments(source)
        if not isinstance(source, FrozenDocuments):
            names |= {env.name for env in config.pypi.environments}
        for name in names:
            if canonicalize_name(name) == wanted:
                return name
    abort(404, description=f"no index {user}/{index} here")


def _file_url(environment: str | None, at: str | None) -> Callable[[Wheel], str]:
    # Relative to the project's page, so the page works at whatever address the node
    # reached it by: up to the union index (a snapshot's page is a folder deeper), or for
    # an environment up to /<user>/ and into the union, whose copy of the file it is.
    up = "../../" if at is None else "../../../"
    if environment is not None:
        up += "../" + app_config().devpi.index.split("/")[1] + "/"

    def url(wheel: Wheel) -> str:
        return up + devpi_file_relpath(wheel.sha256, wheel.filename)

    return url


@blueprint.get("/<user>/<index>/+simple/")
@blueprint.get("/<user>/<index>/@<at>/+simple/")
def index_projects(user: str, index: str, at: str | None = None) -> Response:
    source = served_source(at)
    return project_list(sorted(published(_view(user, index, source), source)))


@blueprint.get("/<user>/<index>/+simple/<project>/")
@blueprint.get("/<user>/<index>/@<at>/+simple/<project>/")
def index_project(user: str, index: str, project: str, at: str | None = None) -> Response:
    source = served_source(at)
    environment = _view(user, index, source)
    files = published_project(project, environment, source)
    return project_page(*files, file_url=_file_url(environment, at))


@blueprint.get("/<user>/<index>/+f/<a>/<b>/<filename>")
def index_file(user: str, index: str, a: str, b: str, filename: str) -> Response:
    if f"{user}/{index}" != app_config().devpi.index:
        abort(404, description=f"no files under {user}/{index}: they are the union index's")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in a + b + filename):
        abort(404, description="no file has a control character in its name")
    refuse_quarantined(filename)
    store = app_store()
    if filename.endswith(".metadata"):
        return metadata_response(filename.removesuffix(".metadata"), snapshot_readers(store))
    live = _published_file(a + b, filename, store)
    held = live or next(
        (w for r in snapshot_readers(store) if (w := _published_file(a + b, filename, r))), None
    )
    if nginx_sends(request):
        # devpi does not hold it (yet, or any more): the store's verified blob, by nginx.
        if held is None or store.local_path(held.sha256) is None:
            abort(404, description=f"{filename} is not a file this mirror publishes")
        return accel_redirect(held.sha256, filename)
    if live is None and held is not None:
        # Only a snapshot holds it, and devpi's index follows the live mirror: ours to send.
        return blob_response(held.sha256, filename)
    devpi = app_config().devpi
    # Without nginx the node asked the front; the bytes are devpi's to send.
    location = f"{devpi.url.rstrip('/')}{quote(request.path, safe='/+@:')}"
    return redirect(location, code=302)  # type: ignore[return-value]


def _published_file(prefix: str, filename: str, source: DocumentReader) -> Wheel | None:
    """The file of this name `source` offers whose sha256 starts with `prefix` (the 16
    hex digits devpi's file path carries)."""
    if len(prefix) != 16:
        return None
    for files in published(source=source).values():
        wheel = files.get(filename)
        if wheel is not None and wheel.sha256.startswith(prefix):
            return wheel
    return None
