"""A local PEP 691 index that behaves like PyPI, and can misbehave on purpose.

Each file has a behaviour: "ok"; "corrupt" (the index lists the true sha256 but other
bytes are served); "flaky" (first answer 500, then the file); "cut" (a full
Content-Length, then the connection closes half way); "slow" (answers after 5 s);
"stall" (answers after 60 s); "hang" (half the body, then a minute of nothing);
"lagging" (the first answer at once, later ones after 2 s).
PEP 658 metadata is served so resolvers never need the wheel itself.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from packaging.utils import canonicalize_name

from testkit.servers import LoopbackHttpServer
from testkit.wheels import SdistSpec, WheelSpec, build_sdist, build_wheel

PEP691 = "application/vnd.pypi.simple.v1+json"


@dataclass
class Hosted:
    spec: WheelSpec | SdistSpec
    data: bytes
    behaviour: str = "ok"
    uploaded: str = "2024-01-02T03:04:05.123456Z"
    yanked: bool | str = False
    # Serves (and declares the hash of) METADATA that is not the wheel's: no dependencies.
    lies_about_metadata: bool = False
    lists_metadata: bool = True  # False: no PEP 658 file, as the registry reachable here

    @property
    def served_metadata(self) -> bytes:
        assert isinstance(self.spec, WheelSpec), "an sdist has no METADATA file beside it"
        if self.lies_about_metadata:
            return WheelSpec(self.spec.name, self.spec.version).metadata()
        return self.spec.metadata()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def metadata_sha256(self) -> str:
        return hashlib.sha256(self.served_metadata).hexdigest()


class Upstream(LoopbackHttpServer):
    """Start with `with Upstream() as up:`; add wheels with `up.add(...)` at any time."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, Hosted] = {}
        self.hits: Counter[str] = Counter()  # file GETs by filename
        self.bytes_served = 0
        self._lock = threading.Lock()
        self.index_url = f"{self.url}/simple/"
        # Pages with an ETag, answering If-None-Match with 304 (as PyPI does); counted.
        self.etags = False
        self.pages_read = 0
        self.not_modified = 0
        # PEP 792 project-status per project: {"status": "archived", "reason": "..."}.
        self.status: dict[str, dict[str, str]] = {}
        # A project's page answered by a handler of the test's own: a hostile upstream.
        self.pages: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}
        # As an Artifactory: every request needs this basic-auth login (401 without it),
        # and pages link files relatively, with `link_query` (e.g. an api_key) on each.
        self.login: tuple[str, str] | None = None
        self.link_query = ""
        self.refused = 0  # requests answered 401

    def index_url_with_login(self) -> str:
        assert self.login is not None
        user, password = self.login
        return self.index_url.replace("://", f"://{user}:{password}@", 1)

    def add(self, spec: WheelSpec, behaviour: str = "ok", uploaded: str | None = None) -> Hosted:
        hosted = Hosted(spec, build_wheel(spec), behaviour)
        if uploaded:
            hosted.uploaded = uploaded
        self.files[spec.filename] = hosted
        return hosted

    def add_sdist(self, spec: SdistSpec, uploaded: str | None = None) -> Hosted:
        hosted = Hosted(spec, build_sdist(spec))
        if uploaded:
            hosted.uploaded = uploaded
        self.files[spec.filename] = hosted
        return hosted

    def file_hits(self) -> int:
        return sum(self.hits.values())

    # ------------------------------------------------------------------ serving
    def _project_doc(self, project: str) -> dict[str, object] | None:
        files = [h for h in self.files.values() if canonicalize_name(h.spec.name) == project]
        if not files:
            return None
        status = {"project-status": self.status[project]} if project in self.status else {}
        return {
            **status,
            "meta": {"api-version": "1.4" if status else "1.1"},
            "name": project,
            "versions": sorted({h.spec.version for h in files}),
            "files": [
                {
                    "filename": h.spec.filename,
                    "url": self._link(h.spec.filename),
                    "hashes": {"sha256": h.sha256},
                    "size": len(h.data),
                    **(
                        {"core-metadata": {"sha256": h.metadata_sha256}}
                        if isinstance(h.spec, WheelSpec) and h.lists_metadata
                        else {}
                    ),
                    "upload-time": h.uploaded,
                    "yanked": h.yanked,
                    **(
                        {"requires-python": h.spec.requires_python}
                        if isinstance(h.spec, WheelSpec) and h.spec.requires_python
                        else {}
                    ),
                }
                for h in files
            ],
        }

    def _link(self, filename: str) -> str:
        if self.login is None and not self.link_query:
            return f"{self.url}/files/{filename}"
        return f"../../files/{filename}" + (f"?{self.link_query}" if self.link_query else "")

    def _logged_in(self, req: BaseHTTPRequestHandler) -> bool:
        if self.login is None:
            return True
        expected = base64.b64encode(":".join(self.login).encode()).decode()
        if req.headers.get("Authorization") == f"Basic {expected}":
            return True
        with self._lock:
            self.refused += 1
        req.send_response(401)
        req.send_header("WWW-Authenticate", 'Basic realm="upstream"')
        req.send_header("Content-Length", "0")
        req.end_headers()
        return False

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        if not self._logged_in(req):
            return None
        path, _, query = req.path.partition("?")
        if query.endswith(".metadata"):  # PEP 658: the file's URL, query and all, + .metadata
            path += ".metadata"
        if path.startswith("/simple/") and path.count("/") == 3:
            project = canonicalize_name(path.split("/")[2])
            if project in self.pages:
                return self.pages[project](req)
            doc = self._project_doc(project)
            if doc is None:
                return _send(req, 404, b"not found", "text/plain")
            body = json.dumps(doc).encode()
            if not self.etags:
                return _send(req, 200, body, PEP691)
            etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
            if req.headers.get("If-None-Match") == etag:
                with self._lock:
                    self.not_modified += 1
                req.send_response(304)
                req.send_header("ETag", etag)
                req.end_headers()
                return None
            with self._lock:
                self.pages_read += 1
            req.send_response(200)
            req.send_header("Content-Type", PEP691)
            req.send_header("Content-Length", str(len(body)))
            req.send_header("ETag", etag)
            req.end_headers()
            req.wfile.write(body)
            return None
        if path.startswith("/files/") and path.endswith(".metadata"):
            hosted = self.files.get(path[len("/files/") : -len(".metadata")])
            if hosted is None:
                return _send(req, 404, b"no such file", "text/plain")
            return _send(req, 200, hosted.served_metadata, "text/plain")
        if path.startswith("/files/"):
            return self._serve_file(req, path[len("/files/") :])
        return _send(req, 404, b"not found", "text/plain")

    def _serve_file(self, req: BaseHTTPRequestHandler, name: str) -> None:
        hosted = self.files.get(name)
        if hosted is None:
            return _send(req, 404, b"no such file", "text/plain")
        with self._lock:
            self.hits[name] += 1
            attempt = self.hits[name]
        data = hosted.data
        if hosted.behaviour == "corrupt":
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        elif hosted.behaviour == "flaky" and attempt == 1:
            return _send(req, 500, b"upstream hiccup", "text/plain")
        elif hosted.behaviour == "slow":
            time.sleep(5)
        elif hosted.behaviour == "stall":
            time.sleep(60)
        elif hosted.behaviour == "lagging" and attempt > 1:
            time.sleep(2)
        if hosted.behaviour == "hang":  # half the body, then nothing for a minute
            req.send_response(200)
            req.send_header("Content-Length", str(len(data)))
            req.end_headers()
            req.wfile.write(data[: len(data) // 2])
            req.wfile.flush()
            time.sleep(60)
            return None
        if hosted.behaviour == "cut":
            req.send_response(200)
            req.send_header("Content-Length", str(len(data)))
            req.send_header("Connection", "close")
            req.end_headers()
            req.wfile.write(data[: len(data) // 2])
            req.wfile.flush()
            req.close_connection = True
            return None
        wanted = req.headers.get("Range", "")
        if wanted.startswith("bytes=") and hosted.behaviour == "ok":  # as PyPI's file host
            first, _, last = wanted[len("bytes=") :].partition("-")
            start = int(first) if first else len(data) - int(last)
            end = int(last) if first and last else len(data) - 1
            part = data[start : end + 1]
            self.bytes_served += len(part)
            req.send_response(206)
            req.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            req.send_header("Content-Length", str(len(part)))
            req.end_headers()
            req.wfile.write(part)
            return None
        self.bytes_served += len(data)
        return _send(req, 200, data, "application/octet-stream")


def _send(req: BaseHTTPRequestHandler, status: int, body: bytes, kind: str) -> None:
    req.send_response(status)
    req.send_header("Content-Type", kind)
    req.send_header("Content-Length", str(len(body)))
    req.end_headers()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        req.wfile.write(body)
