"""The public names' own paths, answered for the models the mirror holds ([proxy]
answer_for; mirror.core.public_names says why): unchanged code asks
`https://tfhub.dev/<publisher>/<model>/<version>?tf-hub-format=compressed` (and each
format's query, TF.js's files), kagglehub asks api.kaggle.com's model API
(hub_cache.kaggle_answers), and Kaggle's handles and REST download are on
www.kaggle.com/kaggle.com. The mirror's own /hub/ paths answer on every name (the Kaggle
answers redirect there). Any other path on a public name is a 404: the mirror stands in
for those sites' models, nothing else of theirs."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import quote, urlsplit

from flask import Request, Response, abort, redirect

from hub_cache import kaggle_answers
from hub_cache.formats.tfjs import FILE_QUERY
from hub_cache.models import load_model
from hub_cache.sending import MAX_FILE_DEPTH
from mirror.core.kaggle import KAGGLE_HOSTS, parse_kagglehub
from mirror.core.public_names import KAGGLE_API, TFHUB
from mirror.core.served import served_source

# Kaggle's REST download, as the mirror's own sync asks an upstream for a model.
REST_DOWNLOAD = re.compile(r"^/api/v1/models/(.{1,1000})/download$")

ServeModel = Callable[[str], "Response | str"]  # hub_cache.routes' model page and bytes


def answer(host: str, request: Request, serve_model: ServeModel) -> Response | str | None:
    """The answer for `request` to public name `host`; None: the mirror's own routes."""
    path = request.path
    if path == "/hub" or path.startswith("/hub/"):
        return None
    rpc = kaggle_answers.RPC_PATH.match(path)
    if rpc is not None and host in (KAGGLE_API, *KAGGLE_HOSTS):
        return kaggle_answers.answer(request, rpc.group(1))
    if host in KAGGLE_HOSTS:
        return _kaggle_site(path, serve_model)
    if host == TFHUB and not path.startswith("/@") and _held_as(TFHUB, path, request):
        return serve_model(path.lstrip("/"))
    abort(404, description=f"this mirror answers {host} only for the models it holds: /hub/")


def _kaggle_site(path: str, serve_model: ServeModel) -> Response | str:
    """A Kaggle model handle's page or bytes (`/models/...?tf-hub-format=compressed`,
    any spelling), and the REST download the mirror's own sync uses upstream."""
    rest = REST_DOWNLOAD.match(path)
    if rest is not None:
        model = parse_kagglehub(rest.group(1))
        manifest = load_model(served_source(None), model.path) if model else None
        if manifest is None or manifest.model_format is None:
            abort(404, description=f"no model {rest.group(1)[:300]!r} on this mirror")
        name, value = manifest.model_format.served_query
        location = f"/hub/{quote(manifest.path)}?{name}={value}"
        return redirect(location, code=302)  # type: ignore[return-value]
    if path.startswith("/models/"):
        return serve_model(path.lstrip("/"))  # the route finds every spelling's one model
    abort(404, description="this mirror answers Kaggle's names only for its models: /hub/")


def _held_as(host: str, path: str, request: Request) -> bool:
    """Whether the model `path` names (or whose file it names, for TF.js's file by file
    requests) is held under a handle on `host`: the mirror answers tfhub.dev for its
    tfhub.dev models, never for a model it keeps under another site's handle."""
    segments = path.strip("/").split("/")
    per_file = request.args.get(FILE_QUERY[0]) == FILE_QUERY[1]
    cuts = range(1, min(len(segments), MAX_FILE_DEPTH + 1)) if per_file else range(1)
    source = served_source(None)
    for cut in cuts:
        manifest = load_model(source, "/".join(segments[: len(segments) - cut]))
        if manifest is not None:
            return (urlsplit(manifest.handle).hostname or "") == host
    return False
