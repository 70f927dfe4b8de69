"""A local server that behaves like tfhub.dev for `?tf-hub-format=compressed`.

tfhub.dev answers a handle with a redirect chain (to Kaggle, then to a signed storage
URL); this server does the same: /<path>?tf-hub-format=compressed -> 302
/kaggle/<path>/download -> 302 /storage/<name>.tar.gz?X-Goog-Signature=... -> bytes.
Behaviours per model: "ok", or "flaky" (500 once, then ok). An upstream that lies (a
body cut at a tar member boundary with a Content-Length to match) is just other bytes.
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class HubUpstream:
    def __init__(self) -> None:
        self.models: dict[str, tuple[bytes, str]] = {}
        self.hits: Counter[str] = Counter()
        up = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                up._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, path: str, data: bytes, behaviour: str = "ok") -> str:
        self.models[path] = (data, behaviour)
        return f"{self.url}/{path}"

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(req.path)
        path = parts.path.strip("/")
        if path.startswith("storage/"):
            return self._storage(req, path[len("storage/") :].removesuffix(".tar.gz"))
        if path.startswith("kaggle/") and path.endswith("/download"):
            model = path[len("kaggle/") : -len("/download")]
            signed = f"/storage/{model}.tar.gz?X-Goog-Signature=abc123&X-Goog-Expires=600"
            return _redirect(req, signed)
        if parse_qs(parts.query).get("tf-hub-format") == ["compressed"] and path in self.models:
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
