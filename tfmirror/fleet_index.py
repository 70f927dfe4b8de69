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
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Blueprint, Response, abort, redirect, request

from mirror.core.accel import accel_redirect, nginx_sends
from mirror.core.config import normalise_name
from mirror.core.context import app_config, app_store
from mirror.devpi.publish import devpi_file_relpath
from mirror.pypi.manifest import stored_environments
from mirror.pypi.resolve import Wheel
from mirror.pypi.simple_pages import (
    metadata_response,
    project_list,
    project_page,
    published,
    published_project,
    refuse_quarantined,
)

blueprint = Blueprint("fleet_index", __name__)


def _view(user: str, index: str) -> str | None:
    """Which selection of the manifests an index path shows: None for the union, else
    the environment's name; 404 for an index this mirror does not have."""
    config = app_config()
    devpi = config.devpi
    if f"{user}/{index}" == devpi.index:
        return None
    if user == devpi.user:
        wanted = normalise_name(index)
        names = {env.name for env in config.pypi.environments} | stored_environments(app_store())
        for name in names:
            if normalise_name(name) == wanted:
                return name
    abort(404, description=f"no index {user}/{index} here")


def _union_file_url(wheel: Wheel) -> str:
    # Relative to /<user>/<index>/+simple/<project>/, so the page works at whatever
    # address the node reached it by.
    return "../../" + devpi_file_relpath(wheel.sha256, wheel.filename)


def _env_file_url(wheel: Wheel) -> str:
    # From /<user>/<environment>/+simple/<project>/ to the union's copy of the file.
    union = app_config().devpi.index.split("/")[1]
    return f"../../../{union}/" + devpi_file_relpath(wheel.sha256, wheel.filename)


@blueprint.get("/<user>/<index>/+simple/")
def index_projects(user: str, index: str) -> Response:
    return project_list(sorted(published(_view(user, index))))


@blueprint.get("/<user>/<index>/+simple/<project>/")
def index_project(user: str, index: str, project: str) -> Response:
    environment = _view(user, index)
    file_url = _union_file_url if environment is None else _env_file_url
    return project_page(*published_project(project, environment), file_url=file_url)


@blueprint.get("/<user>/<index>/+f/<a>/<b>/<filename>")
def index_file(user: str, index: str, a: str, b: str, filename: str) -> Response:
    if f"{user}/{index}" != app_config().devpi.index:
        abort(404, description=f"no files under {user}/{index}: they are the union index's")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in a + b + filename):
        abort(404, description="no file has a control character in its name")
    refuse_quarantined(filename)
    if filename.endswith(".metadata"):
        return metadata_response(filename.removesuffix(".metadata"))
    if nginx_sends(request):
        # devpi does not hold it (yet): the store's verified blob, sent by nginx.
        wheel = _published_file(a + b, filename)
        if wheel is None or app_store().local_path(wheel.sha256) is None:
            abort(404, description=f"{filename} is not a file this mirror publishes")
        return accel_redirect(wheel.sha256, filename)
    devpi = app_config().devpi
    # Without nginx the node asked the front; the bytes are devpi's to send.
    location = f"{devpi.url.rstrip('/')}{quote(request.path, safe='/+@:')}"
    return redirect(location, code=302)  # type: ignore[return-value]


def _published_file(prefix: str, filename: str) -> Wheel | None:
    """The published file of this name whose sha256 starts with `prefix` (the 16 hex
    digits devpi's file path carries)."""
    if len(prefix) != 16:
        return None
    for files in published().values():
        wheel = files.get(filename)
        if wheel is not None and wheel.sha256.startswith(prefix):
            return wheel
    return None
