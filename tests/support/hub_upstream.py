"""A local server that behaves like tfhub.dev for `?tf-hub-format=compressed` (and, for a
model added with its query, `?lite-format=tflite`).

tfhub.dev answers a handle with a redirect chain (to Kaggle, then to a signed storage
URL); this server does the same: /<path>?tf-hub-format=compressed -> 302
/kaggle/<path>/download -> 302 /storage/<name>.tar.gz?X-Goog-Signature=... -> bytes.
Behaviours per model: "ok", or "flaky" (500 once, then ok). An upstream that lies (a
body cut at a tar member boundary with a Content-Length to match) is just other bytes.
"""

from __future__ import annotations

import json
from collections import Counter
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from testkit.servers import LoopbackHttpServer


class HubUpstream(LoopbackHttpServer):
    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.storage_base = ""  # set: signed URLs point at another server (a storage host)
        self.models: dict[str, tuple[bytes, str]] = {}
        self.queries: dict[str, tuple[str, str]] = {}  # path -> the query it answers
        self.hits: Counter[str] = Counter()

    def add(
        self, path: str, data: bytes, behaviour: str = "ok", query: str = "tf-hub-format=compressed"
    ) -> str:
        self.models[path] = (data, behaviour)
        name, _, value = query.partition("=")
        self.queries[path] = (name, value)
        return f"{self.url}/{path}"

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(req.path)
        path = parts.path.strip("/")
        if path.startswith("storage/"):
            return self._storage(req, path[len("storage/") :].removesuffix(".tar.gz"))
        if path.startswith("kaggle/") and path.endswith("/download"):
            model = path[len("kaggle/") : -len("/download")]
            signed = (
                f"{self.storage_base}/storage/{model}.tar.gz"
                "?X-Goog-Signature=abc123&X-Goog-Expires=600"
            )
            return _redirect(req, signed)
        if path in self.models:
            name, value = self.queries[path]
            if parse_qs(parts.query).get(name) == [value]:
                return _redirect(req, f"/kaggle/{path}/download")
        return _send(req, 404, b"Not Found")

    def _storage(self, req: BaseHTTPRequestHandler, path: str) -> None:
        if path not in self.models:
            return _send(req, 404, b"NoSuchKey")
        data, behaviour = self.models[path]
        self.hits[path] += 1
        if behaviour == "flaky" and self.hits[path] == 1:
            return _send(req, 500, b"backend error")
        return _send(req, 200, data)


def _redirect(req: BaseHTTPRequestHandler, location: str) -> None:
    req.send_response(302)
    req.send_header("Location", location)
    req.send_header("Content-Length", "0")
    req.end_headers()


def _send(req: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    req.send_response(status)
    req.send_header("Content-Type", "application/octet-stream")
    req.send_header("Content-Length", str(len(body)))
    req.end_headers()
    req.wfile.write(body)


class KaggleUpstream(LoopbackHttpServer):
    """Kaggle Models as its REST API serves them: GET /api/v1/models/<owner>/<model>/
    <framework>/<variation>/<version>/download answers 302 to a signed storage URL of
    the tar.gz. With `expire_first`, the first signed URL it hands out has expired by
    the time it is used (403 SignatureDoesNotMatch), as real ones do. A model given a
    licence (`license(...)`) has its instance's metadata at
    GET /api/v1/models/<owner>/<model>/<framework>/<variation>/get (`licenseName`)."""

    def __init__(self) -> None:
        super().__init__()
        self.models: dict[str, bytes] = {}  # "owner/model/framework(lower)/variation/version"
        self.expire_first = False
        self.signed = 0
        self.hits: Counter[str] = Counter()
        self.auth: list[str] = []
        # "owner/model/framework(lower)/variation" -> its licenseName (None: none named)
        self.licenses: dict[str, str | None] = {}

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1"

    def add(self, kagglehub_handle: str, data: bytes) -> None:
        owner, model, framework, variation, version = kagglehub_handle.split("/")
        self.models[f"{owner}/{model}/{framework.lower()}/{variation}/{version}"] = data

    def license(self, kagglehub_handle: str, name: str | None) -> None:
        """Serve the model instance's metadata, naming `name` as its licence (None: none)."""
        owner, model, framework, variation, _ = kagglehub_handle.split("/")
        self.licenses[f"{owner}/{model}/{framework.lower()}/{variation}"] = name

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(req.path)
        path = parts.path.strip("/")
        if path.startswith("api/v1/models/") and path.endswith("/download"):
            fields = path[len("api/v1/models/") : -len("/download")].split("/")
            if len(fields) != 5:
                return _send(req, 404, b"Not Found")
            fields[2] = fields[2].lower()  # Kaggle takes the framework in any case
            key = "/".join(fields)
            if key not in self.models:
                return _send(req, 404, b'{"message": "Not found"}')
            self.auth.append(req.headers.get("Authorization", ""))
            self.signed += 1
            return _redirect(req, f"/storage/{key}.tar.gz?X-Goog-Signature=s{self.signed}")
        if path.startswith("api/v1/models/") and path.endswith("/get"):
            return self._instance(req, path[len("api/v1/models/") : -len("/get")].split("/"))
        if path.startswith("storage/"):
            key = path[len("storage/") :].removesuffix(".tar.gz")
            self.hits[key] += 1
            signature = parse_qs(parts.query).get("X-Goog-Signature", [""])[0]
            if self.expire_first and signature == "s1":
                return _send(req, 403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>")
            if key not in self.models:
                return _send(req, 404, b"NoSuchKey")
            return _send(req, 200, self.models[key])
        return _send(req, 404, b"Not Found")

    def _instance(self, req: BaseHTTPRequestHandler, fields: list[str]) -> None:
        """A model instance's metadata, as Kaggle's ApiModelInstance (a few of its fields)."""
        if len(fields) != 4:
            return _send(req, 404, b"Not Found")
        fields[2] = fields[2].lower()
        key = "/".join(fields)
        if key not in self.licenses:
            return _send(req, 404, b'{"message": "Not found"}')
        self.hits[f"{key}/get"] += 1
        doc: dict[str, object] = {"slug": fields[3], "framework": fields[2]}
        if self.licenses[key] is not None:
            doc["licenseName"] = self.licenses[key]
        return _send(req, 200, json.dumps(doc).encode())
