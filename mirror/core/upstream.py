"""Verified, streaming downloads from an upstream index.

Bytes are hashed and counted while they are written to a temporary blob; nothing is
published unless sha256 and size both match. Transient failures (5xx, resets, timeouts)
are retried with exponential backoff; a wrong hash or size is not retried: the upstream
answered and it lied, so asking again would only hide it.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import requests

from mirror.core.storage import BlobStore, BlobWriter, HashingWriter

CHUNK = 1024 * 1024
USER_AGENT = "tfmirror/0.1 (+verified mirror)"
PEP691_JSON = "application/vnd.pypi.simple.v1+json"


class DownloadError(Exception):
    """One file could not be fetched and verified; the message says why."""


class _Transient(Exception):
    pass


@dataclass(frozen=True)
class RetryPolicy:
    timeout: float = 60.0
    retries: int = 4
    backoff: float = 0.5  # first wait; doubles each attempt, with jitter


_local = threading.local()


def session() -> requests.Session:
    """One requests.Session per thread: connection reuse without sharing a pool across threads."""
    sess: requests.Session | None = getattr(_local, "session", None)
    if sess is None:
        sess = requests.Session()
        sess.headers["User-Agent"] = USER_AGENT
        _local.session = sess
    return sess


class ProjectPages:
    """Upstream's PEP 691 project pages, each fetched at most once per sync: the head
    start and the lag record both read the top-level requirements' pages (TensorFlow's
    lists about 1,800 files)."""

    def __init__(self, upstream: str, timeout: float) -> None:
        self.upstream = upstream
        self._timeout = timeout
        self._lock = threading.Lock()
        self._docs: dict[str, dict[str, Any] | None] = {}

    def get(self, project: str) -> dict[str, Any] | None:
        """The page's JSON with absolute file URLs; None if upstream gave none readable."""
        with self._lock:
            if project not in self._docs:
                self._docs[project] = self._fetch(project)
            return self._docs[project]

    def _fetch(self, project: str) -> dict[str, Any] | None:
        page = f"{self.upstream.rstrip('/')}/{project}/"
        try:
            answer = session().get(page, headers={"Accept": PEP691_JSON}, timeout=self._timeout)
            # Any JSON answer will do (an index that ignores Accept answers with HTML).
            if answer.status_code != 200 or "json" not in answer.headers.get("Content-Type", ""):
                return None
            doc = answer.json()
        except (OSError, ValueError):  # requests' errors are OSErrors
            return None
        if not isinstance(doc, dict):
            return None
        doc["files"] = [
            {**entry, "url": urljoin(page, str(entry.get("url", "")))}
            for entry in doc.get("files", [])
            if isinstance(entry, dict)
        ]
        return doc


@dataclass(frozen=True)
class Fetched:
    sha256: str
    size: int
    url: str  # where the bytes finally came from, after redirects


def fetch_verified(
    store: BlobStore,
    url: str,
    sha256: str | None,
    size: int | None,
    policy: RetryPolicy,
    progress: Callable[[int], None] | None = None,
) -> Fetched:
    """Download `url` into the store, published under its sha256.

    With `sha256` (and `size`) given, anything else is rejected; without, the blob is
    published under the hash of what arrived (TF Hub lists no hashes), and the caller
    validates it before any manifest refers to it.
    """
    attempt = 0
    while True:
        try:
            return _fetch_once(store, url, sha256, size, policy, progress)
        except _Transient as exc:
            attempt += 1
            if attempt > policy.retries:
                raise DownloadError(f"{exc} (gave up after {attempt} attempts)") from None
            time.sleep(policy.backoff * (2 ** (attempt - 1)) * (0.5 + random.random()))


def _fetch_once(
    store: BlobStore,
    url: str,
    sha256: str | None,
    size: int | None,
    policy: RetryPolicy,
    progress: Callable[[int], None] | None,
) -> Fetched:
    writer = store.new_blob()
    sink = _Sink(writer)
    count = 0
    try:
        try:
            with session().get(url, stream=True, timeout=policy.timeout) as answer:
                final_url = answer.url
                if answer.status_code >= 500 or answer.status_code == 429:
                    raise _Transient(f"HTTP {answer.status_code}")
                if answer.status_code != 200:
                    raise DownloadError(f"HTTP {answer.status_code}")
                for chunk in answer.iter_content(CHUNK):
                    count += len(chunk)
                    if size is not None and count > size:
                        raise DownloadError(f"longer than the {size} bytes the index lists")
                    sink.put(chunk)
                    if progress:
                        progress(len(chunk))
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Transient(f"{type(exc).__name__}: {_short(exc)}") from None
        except requests.exceptions.ChunkedEncodingError as exc:
            raise _Transient(f"connection broken: {_short(exc)}") from None
        if size is not None and count != size:
            raise DownloadError(f"truncated: got {count} of {size} bytes")
        got = sink.finish()
        if sha256 is not None and got != sha256:
            raise DownloadError(f"sha256 mismatch: index lists {sha256}, bytes hash to {got}")
        writer.publish(got)
        return Fetched(got, count, final_url)
    except BaseException:
        sink.abort()
        writer.discard()
        raise


class _Sink:
    """Hashes and writes a download's chunks on a thread of its own.

    Reading TLS, hashing and writing each release the GIL; one thread doing all three
    in turn left a core idle. Measured on the 572 MB TensorFlow wheel: TLS reads 0.41 s,
    sha256 0.31 s, writes 0.12 s, all serial before. The queue bounds memory (8 MiB).
    """

    def __init__(self, writer: BlobWriter) -> None:
        self._writer = HashingWriter(writer)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="sink", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep draining so put() never blocks on a dead consumer
            try:
                self._writer.write(chunk)
            except BaseException as exc:  # handed to the download's thread
                self._error = exc

    def put(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def finish(self) -> str:
        """Wait for every chunk to be written; the sha256 of them all."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._writer.sha256

    def abort(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "..."
