"""Kaggle's model API as kagglehub 1.x calls it, answered from the mirror's models, so
`kagglehub.model_download("owner/model/framework/variation[/version]")` works unchanged
where the site's DNS sends api.kaggle.com to the mirror. kagglesdk POSTs JSON to
`/v1/models.ModelApiService/<Rpc>` (`/api/v1/...` in its test environments) and reads:
- GetModelInstance: `versionNumber`, the newest version of an unversioned handle;
- ListModelInstanceVersionFiles: `files` (name, size) and `nextPageToken`: with no more
  pages kagglehub asks for each file (DownloadModelInstanceVersion with `path`), else it
  downloads the whole archive and unpacks it;
- DownloadModelInstanceVersion: the bytes, after any redirect. The archive is a redirect
  to the mirror's own /hub/ URL on the name it was asked by (nginx sends the blob, and a
  resumed download's GET with Range lands there too); one file of an archived model is
  streamed out of the archive, one kept as a blob of its own is a redirect to it.
An error is Kaggle's JSON `{"code", "message"}`, which kagglesdk raises as HTTPError and
kagglehub as its KaggleApiHTTPError; a model the mirror lacks is a 404 naming it."""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, BinaryIO
from urllib.parse import quote

from flask import Request, Response, redirect

from hub_cache.formats.tfjs import FILE_QUERY
from hub_cache.models import HUB_MANIFESTS, ModelManifest, load_model
from mirror.core.context import app_store
from mirror.core.errors import BlobNotFound
from mirror.core.kaggle import KaggleModel, parse_kagglehub
from mirror.core.quarantine import read_quarantine
from mirror.core.redact import bounded
from mirror.core.served import served_source
from mirror.core.storage import DocumentReader

RPC_PATH = re.compile(r"^/(?:api/)?v1/models\.ModelApiService/([A-Za-z]{1,64})$")
FRAMEWORK_PREFIX = "MODEL_FRAMEWORK_"  # kagglesdk's ModelFramework enum names
MAX_BODY = 64 * 1024  # kagglesdk's requests are a few hundred bytes
MAX_PAGE = 1000
MAX_LISTED = 100_000  # files of one model listed; a model's archive checks cap far lower
CHUNK = 1024 * 1024


class KaggleAnswer(Exception):
    """An error answer, as Kaggle's API gives it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def response(self) -> Response:
        body = json.dumps({"code": self.code, "message": self.message})
        return Response(body, status=self.code, mimetype="application/json")


@dataclass(frozen=True)
class InstanceCall:
    """What one call names: a model instance, maybe a version, a file and a page."""

    model: KaggleModel  # version "0" when the call names none
    framework_enum: str  # as the client sent it, for the answer
    path: str = ""
    page_size: int = 0
    page_token: str = ""

    @property
    def shown(self) -> str:
        """The handle as kagglehub writes it (the mirror keeps the framework lower-case)."""
        m = self.model
        handle = f"{m.owner}/{m.model}/{m.framework}/{m.variation}"
        return handle if m.version == "0" else f"{handle}/{m.version}"


def answer(request: Request, rpc: str) -> Response:
    """The answer to one RPC, or Kaggle's error for it."""
    try:
        if request.method != "POST":
            raise KaggleAnswer(405, f"{rpc} is called with POST")
        call = _read_call(request)
        if rpc == "GetModelInstance":
            return _json(_instance(call))
        if rpc == "ListModelInstanceVersionFiles":
            return _json(_files(call))
        if rpc == "DownloadModelInstanceVersion":
            return _download(call)
        raise KaggleAnswer(404, f"models.ModelApiService/{rpc} is not answered by this mirror")
    except KaggleAnswer as refusal:
        return refusal.response()


def _json(doc: dict[str, Any]) -> Response:
    return Response(json.dumps(doc), mimetype="application/json")


def _read_call(request: Request) -> InstanceCall:
    if (request.content_length or 0) > MAX_BODY:
        raise KaggleAnswer(413, f"request body over {MAX_BODY // 1024} KiB")
    try:
        doc = json.loads(request.get_data(cache=False)[:MAX_BODY] or b"{}")
    except (ValueError, UnicodeError):
        raise KaggleAnswer(400, "the request body is not JSON") from None
    if not isinstance(doc, dict):
        raise KaggleAnswer(400, "the request body is not a JSON object")
    enum = _text(doc, "framework")
    framework = enum.removeprefix(FRAMEWORK_PREFIX).replace("_", "").lower()
    version = doc.get("versionNumber", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise KaggleAnswer(400, f"versionNumber {bounded(repr(version), 40)} is not a version")
    fields = (_text(doc, "ownerSlug"), _text(doc, "modelSlug"), framework)
    handle = "/".join((*fields, _text(doc, "instanceSlug"), str(version)))
    model = parse_kagglehub(handle)
    if model is None or not enum.startswith(FRAMEWORK_PREFIX):
        raise KaggleAnswer(400, f"{bounded(handle, 300)} does not name a model instance")
    size = doc.get("pageSize", 0)
    size = size if isinstance(size, int) and not isinstance(size, bool) else 0
    return InstanceCall(model, enum, _text(doc, "path"), size, _text(doc, "pageToken"))


def _text(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name, "")
    if not isinstance(value, str):
        raise KaggleAnswer(400, f"{name} must be a string")
    return value


def _instance(call: InstanceCall) -> dict[str, Any]:
    """ApiModelInstance of the newest version the fleet may use."""
    manifest = _newest(served_source(None), call)
    m = call.model
    return {
        "slug": m.variation,
        "framework": call.framework_enum,
        "versionNumber": int(manifest.path.rsplit("/", 1)[1]),
        "url": f"/models/{m.owner}/{m.model}/{m.framework}/{m.variation}",
    }


def _newest(source: DocumentReader, call: InstanceCall) -> ModelManifest:
    """The highest version the mirror serves of the instance, quarantined ones skipped."""
    folder = call.model.path.rsplit("/", 1)[0]
    versions = []
    for key in source.list(f"{HUB_MANIFESTS}/{folder}"):
        name = key.rsplit("/", 1)[1].removesuffix(".json")
        if key.endswith(".json") and name.isdigit() and key.count("/") == folder.count("/") + 3:
            versions.append(int(name))
    quarantine = read_quarantine(app_store())
    for version in sorted(versions, reverse=True):
        manifest = load_model(source, f"{folder}/{version}")
        if manifest is not None and quarantine.model_rule(manifest.handle, manifest.path) is None:
            return manifest
    raise KaggleAnswer(404, f"model instance {call.shown} not found: this mirror does not hold it")


def _held(call: InstanceCall) -> ModelManifest:
    if call.model.version == "0":
        raise KaggleAnswer(400, f"{call.shown}: versionNumber is required")
    manifest = load_model(served_source(None), call.model.path)
    if manifest is None:
        raise KaggleAnswer(404, f"model {call.shown} not found: this mirror does not hold it")
    rule = read_quarantine(app_store()).model_rule(manifest.handle, manifest.path)
    if rule is not None:
        raise KaggleAnswer(410, f"model {call.shown} is quarantined: {rule.reason}")
    return manifest


def _files(call: InstanceCall) -> dict[str, Any]:
    """ApiListModelInstanceVersionFilesResponse: one page (pageToken: where it starts)."""
    manifest = _held(call)
    files = model_files(manifest)
    start = int(call.page_token) if call.page_token.isdigit() else 0
    size = min(call.page_size, MAX_PAGE) if call.page_size > 0 else MAX_PAGE
    page = files[start : start + size]
    more = start + size < len(files)
    # kagglehub fetches a model whose first page is its last file by file, and one with
    # more pages as its archive. Each file of an archived model comes out of the archive
    # un-gzipped from its start, so such a model's first page says there may be more:
    # kagglehub takes the archive once (nginx sends the blob), and a client that pages
    # on gets an empty last page (AIP-158 lets a page hold fewer than asked, even none).
    if not more and start == 0 and page and _archived(manifest):
        more = True
    return {
        "files": [{"name": name, "size": size} for name, size in page],
        "nextPageToken": str(start + size) if more else "",
    }


def _archived(manifest: ModelManifest) -> bool:
    """Held only as an archive: no file kept on its own, not a single-file model."""
    model_format = manifest.model_format
    single = model_format is not None and model_format.single_file
    return not single and not manifest.served_files()


def model_files(manifest: ModelManifest) -> list[tuple[str, int]]:
    """The model's files as Kaggle lists them (paths inside the model folder, sizes)."""
    kept = manifest.served_files()
    if kept:
        return sorted((name, size) for name, (_, size) in kept.items())
    model_format = manifest.model_format
    if model_format is not None and model_format.single_file:
        return [(_single_name(manifest), manifest.size)]
    return list(_archive_members(manifest.sha256, manifest.path))


@lru_cache(maxsize=256)
def _archive_members(sha256: str, path: str) -> tuple[tuple[str, int], ...]:
    """An archive's files, read through once per archive (a blob's bytes never change
    under its sha256): a listing is asked by every node that loads the model."""
    blob, tar = _open_archive(sha256, path)
    with blob, tar:
        listed = [(_plain(m.name), m.size) for m in tar if m.isfile()]
    return tuple(sorted(listed[:MAX_LISTED]))


def _single_name(manifest: ModelManifest) -> str:
    model_format = manifest.model_format
    suffix = model_format.suffix if model_format else ""
    return manifest.path.rsplit("/", 2)[-2] + suffix


def _plain(name: str) -> str:
    return name.removeprefix("./")


def _open_archive(sha256: str, path: str) -> tuple[BinaryIO, tarfile.TarFile]:
    """Model `path`'s archive blob, read as a stream (it passed the archive checks at
    sync); closing the archive leaves the blob to close."""
    try:
        blob = app_store().open_blob(sha256)
    except BlobNotFound:
        raise KaggleAnswer(503, f"{path}: its archive is missing from the store") from None
    try:
        return blob, tarfile.open(fileobj=blob, mode="r|*")
    except tarfile.TarError:
        blob.close()
        raise KaggleAnswer(503, f"{path}: its archive does not read") from None


def _download(call: InstanceCall) -> Response:
    manifest = _held(call)
    hub = f"/hub/{quote(manifest.path)}"
    model_format = manifest.model_format
    if not call.path:
        name, value = model_format.served_query if model_format else ("", "")
        return redirect(f"{hub}?{name}={value}", code=302)  # type: ignore[return-value]
    if call.path in manifest.served_files():
        return redirect(f"{hub}/{quote(call.path)}?{FILE_QUERY[0]}={FILE_QUERY[1]}", code=302)  # type: ignore[return-value]
    if model_format is not None and model_format.single_file:
        if call.path != _single_name(manifest):
            raise KaggleAnswer(404, f"model {call.shown} has no file {bounded(call.path, 200)}")
        name, value = model_format.served_query
        return redirect(f"{hub}?{name}={value}", code=302)  # type: ignore[return-value]
    return _member(manifest, call)


def _member(manifest: ModelManifest, call: InstanceCall) -> Response:
    """One file of an archived model, streamed out of its archive."""
    blob, tar = _open_archive(manifest.sha256, manifest.path)
    found = next((m for m in tar if m.isfile() and _plain(m.name) == call.path), None)
    reader = tar.extractfile(found) if found is not None else None
    if found is None or reader is None:
        tar.close()
        blob.close()
        raise KaggleAnswer(404, f"model {call.shown} has no file {bounded(call.path, 200)}")

    def body() -> Iterator[bytes]:
        try:
            while chunk := reader.read(CHUNK):
                yield chunk
        finally:
            tar.close()
            blob.close()

    resp = Response(body(), mimetype="application/octet-stream")
    resp.headers["Content-Length"] = str(found.size)
    return resp
