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

from typing import Any

from flask import Blueprint, Response, abort, jsonify, request

from hub_cache.compat_matrix import Pair, model_matrix, read_matrix
from hub_cache.contracts import kept_contract, served_check
from hub_cache.formats import served_by_query
from hub_cache.formats.base import TFHUB_CACHE
from hub_cache.formats.tfjs import FILE_QUERY
from hub_cache.models import ModelManifest, load_model, load_models
from hub_cache.original_names import answer as answer_public_name
from hub_cache.sending import folder_file, model_file, refuse_quarantined
from mirror.core.context import app_config, app_public_url, app_store
from mirror.core.kaggle import parse_kaggle_path
from mirror.core.pages import render
from mirror.core.public_names import bare_host
from mirror.core.quarantine import read_quarantine
from mirror.core.redact import redact_url
from mirror.core.served import served_source

blueprint = Blueprint("hub", __name__)


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
    contract = kept_contract(app_store(), manifest.sha256)
    check = served_check(app_store(), manifest, app_config().hub)
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
        # The signatures it takes and gives, read without TensorFlow at sync (None: not
        # read yet), and this version against the contract its entry pins, if one does.
        "contract": contract.as_json() if contract else None,
        "contract_check": check.as_json() if check else None,
        # As read at sync: name as upstream gave it, SPDX id, where from (and why unknown).
        "license": manifest.model_license.as_json(),
        # Who signed it, as verified when it was published (hub_cache.signatures).
        "signer": manifest.signer or None,
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


@blueprint.before_app_request
def public_names() -> Response | str | None:
    """A request to a public name the mirror answers ([proxy] answer_for: tfhub.dev,
    Kaggle's names) gets that site's answer for the models the mirror holds."""
    names = app_config().proxy.answer_for
    host = bare_host(request.host) if names else ""
    if host not in names:
        return None
    return answer_public_name(host, request, model)


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
        return folder_file(at, path)
    kaggle = parse_kaggle_path(path)  # any spelling of a Kaggle model: its one path
    manifest = load_model(served_source(at), kaggle.path if kaggle else path.strip("/"))
    if manifest is None:
        where = f" in snapshot {at}" if at else ""
        abort(404, description=f"no model at /hub/{path}{where} on this mirror; /hub/ lists them")
    refuse_quarantined(manifest)
    asked = served_by_query(request.args)
    if asked is not None:
        return model_file(manifest, asked)
    info = model_json(manifest, _base(), at, read_matrix(app_store()))
    if _wants_json():
        return jsonify(info)
    loads = _loads(manifest, info["mirror_handle"])
    check = served_check(app_store(), manifest, app_config().hub)
    return render(
        "hub_cache/model.html",
        title=manifest.handle,
        model=manifest,
        info=info,
        loads=loads,
        contract=kept_contract(app_store(), manifest.sha256),
        check=check,
    )
