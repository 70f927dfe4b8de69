"""Files from disk over loopback HTTP, for benches and tests: a local tfhub.dev (a model's
handle asked with its form's query, `?lite-format=tflite`, `?tfjs-format=compressed`,
answers 302 to a storage URL, as tfhub.dev redirects to a signed one) and a plain web
site (a page of another origin). Files go out with sendfile(), so a 100 MB model neither
sits in memory nor passes through Python."""

from __future__ import annotations

import mimetypes
import os
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

from testkit.servers import LoopbackHttpServer

STORAGE = "storage/"


class HubFiles(LoopbackHttpServer):
    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, tuple[Path, str]] = {}  # model path -> (file, query it answers)

    def add(self, path: str, file: Path, query: str) -> str:
        """Serve `file` for `path?query`; returns the handle (the URL without its query)."""
        self.files[path] = (file, query)
        return f"{self.url}/{path}"

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(req.path)
        path = parts.path.strip("/")
        stored = self.files.get(path.removeprefix(STORAGE))
        if path.startswith(STORAGE) and stored is not None:
            return _send_file(req, stored[0])
        if stored is not None and parts.query == stored[1]:
            req.send_response(302)
            req.send_header("Location", f"/{STORAGE}{path}?X-Goog-Signature=bench")
            req.send_header("Content-Length", "0")
            return req.end_headers()
        req.send_response(404)
        req.send_header("Content-Length", "0")
        req.end_headers()


class StaticSite(LoopbackHttpServer):
    """The files of a folder, each at its name (a page and its scripts)."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        name = urlsplit(req.path).path.strip("/")
        file = self.folder / name
        if "/" in name or not name or not file.is_file():
            req.send_response(404)
            req.send_header("Content-Length", "0")
            return req.end_headers()
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        _send_file(req, file, kind)


def _send_file(
    req: BaseHTTPRequestHandler, file: Path, kind: str = "application/octet-stream"
) -> None:
    with file.open("rb") as source:
        req.send_response(200)
        req.send_header("Content-Type", kind)
        req.send_header("Content-Length", str(os.fstat(source.fileno()).st_size))
        req.end_headers()
        req.wfile.flush()
        req.connection.sendfile(source)
