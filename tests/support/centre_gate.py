"""A gate in front of a centre's web front, on a loopback port of its own: it passes
every GET through (headers both ways, a 304 as a 304) and counts, for each blob a site
asks for at /api/follow/blob/<sha256>, how often it was asked and how often its body
went out whole. `pace` slows blob bodies (bytes per second, None: at once), so a test
can catch a pull while its blobs are still streaming."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from testkit.servers import LoopbackHttpServer

BLOB_PATH = "/api/follow/blob/"
_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}
CHUNK = 16 * 1024


class CentreGate(LoopbackHttpServer):
    def __init__(self, centre_url: str) -> None:
        super().__init__()
        parts = urlsplit(centre_url)
        self.centre = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.pace: float | None = None
        self.asked: Counter[str] = Counter()
        self.delivered: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        sha = req.path[len(BLOB_PATH) :] if req.path.startswith(BLOB_PATH) else None
        if sha is not None:
            with self._lock:
                self.asked[sha] += 1
        conn = http.client.HTTPConnection(*self.centre, timeout=60)
        try:
            headers = {k: v for k, v in req.headers.items() if k.lower() not in _HOP}
            conn.request("GET", req.path, headers=headers)
            answer = conn.getresponse()
            body = answer.read()  # the centre's documents and test blobs are small
        finally:
            conn.close()
        req.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in _HOP:
                req.send_header(key, value)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        try:
            self._send(req, body, paced=sha is not None)
        except OSError:
            return  # the site went away mid-body (killed): not delivered
        if sha is not None:
            with self._lock:
                self.delivered[sha] += 1

    def _send(self, req: BaseHTTPRequestHandler, body: bytes, paced: bool) -> None:
        for start in range(0, len(body), CHUNK):
            req.wfile.write(body[start : start + CHUNK])
            req.wfile.flush()
            pace = self.pace
            if paced and pace:
                time.sleep(CHUNK / pace)
