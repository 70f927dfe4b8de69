"""The index the fleet reads: the `index-url` that `tfmirror pip-conf` prints.

devpi 6.20.3 (the newest) serves PEP 691 JSON as api-version 1.0 with no upload-time, no
size and no core-metadata hash, so uv's --exclude-newer refuses every file through it.
These pages are rendered from the manifests instead, with every PEP 691/700/658/592
fact, at devpi's own path (`/<user>/<index>/+simple/`); the files they link stay devpi's
(`../../+f/...`), sent by nginx from devpi's serverdir. A request for a file that reaches
a front (no nginx in front) is sent on to devpi; a wheel's `.metadata` is the front's own.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, redirect, request

from mirror.core.context import app_config
from mirror.devpi.publish import devpi_file_relpath
from mirror.pypi.resolve import Wheel
from mirror.pypi.simple_pages import (
    metadata_response,
    project_list,
    project_page,
    published,
    published_project,
)

blueprint = Blueprint("fleet_index", __name__)


def _check_index(user: str, index: str) -> None:
    if f"{user}/{index}" != app_config().devpi.index:
        abort(404, description=f"no index {user}/{index} here")


def _file_url(wheel: Wheel) -> str:
    # Relative to /<user>/<index>/+simple/<project>/, so the page works at whatever
    # address the node reached it by.
    return "../../" + devpi_file_relpath(wheel.sha256, wheel.filename)


@blueprint.get("/<user>/<index>/+simple/")
def index_projects(user: str, index: str) -> Response:
    _check_index(user, index)
    return project_list(sorted(published()))


@blueprint.get("/<user>/<index>/+simple/<project>/")
def index_project(user: str, index: str, project: str) -> Response:
    _check_index(user, index)
    return project_page(*published_project(project), file_url=_file_url)


@blueprint.get("/<user>/<index>/+f/<a>/<b>/<filename>")
def index_file(user: str, index: str, a: str, b: str, filename: str) -> Response:
    _check_index(user, index)
    if filename.endswith(".metadata"):
        return metadata_response(filename.removesuffix(".metadata"))
    devpi = app_config().devpi
    # Without nginx the node asked the front; the bytes are devpi's to send.
    return redirect(f"{devpi.url.rstrip('/')}{request.path}", code=302)  # type: ignore[return-value]
