"""Upstream's index as a build sandbox sees it: the sandbox's only way out. Served on a
Unix socket the sandbox reaches as a loopback port: upstream's PEP 691 pages with every
file pointed here, each file fetched with the sync's own verified download into the
store and sent from there, so code in the sandbox gets the bytes the mirror verified and
nothing else (no other host, no upload, no write to the store). Each sandbox's session
is bound to one view (its environment's cooldown, no quarantined file) whatever path it
asks by, and remembers the files it took (a build's requirements); `/cooldown/<cutoff>/`
paths are for the syncer's own resolver only."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import socketserver
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import unquote

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from mirror.core.errors import DownloadError, StoreError
from mirror.core.quarantine import Quarantine
from mirror.core.storage import RANGE_READ, BlobStore, RangedFile, iter_chunks
from mirror.core.timestamps import rfc3339_utc
from mirror.core.upstream import (
    PEP691_JSON,
    FetchPolicy,
    ProjectPages,
    fetch_range,
    fetch_verified,
    shared_session,
)
from mirror.pypi.cooldown import Cooldown, Held
from mirror.pypi.core_metadata import read_metadata
from mirror.pypi.errors import MetadataError, ResolveError
from mirror.pypi.resolve import Role, Wheel

log = logging.getLogger("tfmirror.pypi.local_index")
MAX_METADATA = 8 * 1024 * 1024
TAIL = 64 * 1024  # a wheel's bytes read at once for its METADATA (class _Tail)
PREFETCH = 8  # older releases' METADATA read ahead of a resolver walking down
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Taken:
    """A file the sandbox took: upstream's entry for it, with its project."""

    project: str
    entry: dict[str, Any]

    @property
    def filename(self) -> str:
        return str(self.entry["filename"])

    @property
    def sha256(self) -> str:
        return str(self.entry["hashes"]["sha256"])

    @property
    def size(self) -> int | None:
        """The size upstream's page declares, if it declares one."""
        size = self.entry.get("size")
        return size if isinstance(size, int) else None

    def as_wheel(self, role: Role) -> Wheel:
        """The file, as a manifest lists it (an sdist too, despite the class's name)."""
        filename = self.filename
        if filename.endswith(".whl"):
            version_text = str(parse_wheel_filename(filename)[1])
        else:  # an sdist: name-version.tar.gz
            stem = filename.removesuffix(".tar.gz").removesuffix(".zip")
            version_text = stem.rsplit("-", 1)[-1]
        return Wheel(
            project=self.project,
            version=version_text,
            filename=filename,
            url=str(self.entry.get("url", "")),
            sha256=self.sha256,
            size=self.size,
            upload_time=rfc3339_utc(self.entry.get("upload-time")),
            role=role,
        )


@dataclass(frozen=True)
class View:
    """What one sandbox may see of upstream: its environment's cooldown (by its cutoff,
    None: none) and, always, nothing quarantined."""

    cutoff: int | None


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    # uv opens dozens of connections at once; socketserver's backlog of 5 dropped the
    # rest, and each retried after TCP's backoff: a resolve sat idle for 20 s.
    request_queue_size = 256
    index: LocalIndex
    taken: list[Taken] | None = None  # a session's: each file its sandbox downloaded
    view: View | None = None  # a sandbox's session: the only view it is served


@dataclass(frozen=True)
class Session:
    """One sandbox's own socket to the index, and the files it took through it (a
    build's requirements), so that builds can run side by side."""

    socket: Path
    taken: list[Taken]

    def taken_by_sha(self) -> dict[str, Taken]:
        return {t.sha256: t for t in self.taken}


class _LoopbackServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    request_queue_size = 256  # as _Server's
    index: LocalIndex
    taken: list[Taken] | None = None
    view: View | None = None  # the syncer's own resolver picks its view by path


_AnyServer = TypeVar("_AnyServer", _Server, _LoopbackServer)


class LocalIndex:
    """`with LocalIndex(store, pages, policy) as index:` serves a sandbox through
    `index.session(cooldown)` (a socket of its own) and, once asked for `index.url()`, on
    a loopback port (for the syncer's own resolver, which is held to the same policy as
    a sandbox's: no fetch of its own)."""

    def __init__(
        self,
        store: BlobStore,
        pages: ProjectPages,
        policy: FetchPolicy,
        quarantine: Quarantine | None = None,
    ) -> None:
        self.store = store
        self.pages = pages
        self.policy = policy
        self.quarantine = quarantine or Quarantine()  # as the sync began
        self._lock = threading.Lock()
        self._files: dict[str, Taken] = {}  # sha256 -> entry, from the pages served
        # As served, by project and cooldown cutoff: the same all sync long.
        self._pages: dict[tuple[str, int | None, bool], bytes | None] = {}
        self._cooldowns: dict[int, Cooldown] = {}  # by cutoff, as its pages' paths name it
        self._held: dict[tuple[str, str], Held] = {}  # (project, version) left out
        self._folder = tempfile.TemporaryDirectory(prefix="tfmirror-index-")
        self._loopback: _LoopbackServer | None = None
        self._upstream = shared_session()  # for ranges: one request each, many threads
        # METADATA made from wheels upstream lists none for, each read once (in flight
        # or done) however many resolvers and prefetches ask.
        self._metadata: dict[str, Future[bytes]] = {}
        self._asked: dict[str, set[Version]] = {}  # versions a resolver read, by project
        self._prefetch = ThreadPoolExecutor(PREFETCH, thread_name_prefix="metadata")

    @contextlib.contextmanager
    def session(self, cooldown: Cooldown | None) -> Iterator[Session]:
        """A socket of its own for one sandbox, served while the block runs, showing it
        only what `cooldown`'s environment may see."""
        served = Session(Path(self._folder.name) / f"{uuid.uuid4().hex[:8]}.sock", [])
        server = _Server(str(served.socket), _Handler)
        server.taken = served.taken
        server.view = View(self._register(cooldown))  # before the first request
        self._serve(server)
        try:
            yield served
        finally:
            server.shutdown()
            server.server_close()
            served.socket.unlink(missing_ok=True)

    def entry(self, sha256: str) -> Taken | None:
        """Upstream's entry for a file a page it served listed."""
        with self._lock:
            return self._files.get(sha256)

    def __enter__(self) -> LocalIndex:
        return self

    def _serve(self, server: _AnyServer) -> _AnyServer:
        """`server` answering for this index, on a thread of its own."""
        server.index = self
        threading.Thread(target=server.serve_forever, name="local-index", daemon=True).start()
        return server

    def prefix(self, cooldown: Cooldown | None) -> str:
        """The path its pages are under for resolves held to `cooldown`: each
        environment of a sync may have its own min_age."""
        cutoff = self._register(cooldown)
        return f"/cooldown/{cutoff}" if cutoff is not None else ""

    def _register(self, cooldown: Cooldown | None) -> int | None:
        """The cutoff pages for `cooldown` are made under (None: no cooldown)."""
        if cooldown is None or not cooldown.active:
            return None
        with self._lock:
            self._cooldowns[cooldown.cutoff] = cooldown
        return cooldown.cutoff

    def held(self) -> list[Held]:
        """Every release a page left out for a cooldown, this sync."""
        with self._lock:
            return list(self._held.values())

    def url(self, cooldown: Cooldown | None = None) -> str:
        """The index's address on loopback (started on first use)."""
        with self._lock:
            if self._loopback is None:
                self._loopback = self._serve(_LoopbackServer(("127.0.0.1", 0), _Handler))
            port = self._loopback.server_address[1]
        return f"http://127.0.0.1:{port}{self.prefix(cooldown)}/simple/"

    def upstream(self, wheel: Wheel) -> Wheel:
        """`wheel` as a resolver reading this index named it, named by upstream's address
        as a manifest lists it; a wheel built here (file:) stays as it is."""
        if wheel.url.startswith("file:"):
            return wheel
        parts = [p for p in wheel.url.split("?", 1)[0].split("/") if p]
        if len(parts) >= 3 and parts[-3] == "files" and _SHA256.match(parts[-2]):
            taken = self.entry(parts[-2])
            if taken is not None and taken.filename == unquote(parts[-1]):
                return replace(wheel, url=str(taken.entry["url"]))
        raise ResolveError(f"{wheel.filename}: the resolver named a file no page listed")

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._loopback is not None:
            self._loopback.shutdown()
            self._loopback.server_close()
        self._prefetch.shutdown(wait=True, cancel_futures=True)
        self._upstream.close()
        self._folder.cleanup()

    # -- what the handler asks ----------------------------------------------------
    def page(self, project: str, cutoff: int | None = None, sandbox: bool = False) -> bytes | None:
        """The project's page, pointing here, without what the cooldown under `cutoff`
        holds back; made once per sync (a sandbox's resolvers ask for every page in each
        of up to seven resolves). None: no such page (or no such cooldown)."""
        name = canonicalize_name(project)
        with self._lock:
            if (name, cutoff, sandbox) in self._pages:
                return self._pages[(name, cutoff, sandbox)]
            cooldown = self._cooldowns.get(cutoff) if cutoff is not None else None
        if cutoff is not None and cooldown is None:
            return None
        body = self._page(name, cooldown, sandbox)
        with self._lock:
            self._pages[(name, cutoff, sandbox)] = body
        return body

    def allows(self, taken: Taken, view: View) -> bool:
        """A sandbox with `view` may have this file: its environment's cooldown lets it
        through and nothing quarantines it."""
        if self.quarantine.rule_for_file(taken.filename) is not None:
            return False
        if view.cutoff is None:
            return True
        with self._lock:
            cooldown = self._cooldowns.get(view.cutoff)
        return cooldown is not None and cooldown.holds(taken.project, taken.entry) is None

    def _page(self, name: str, cooldown: Cooldown | None, sandbox: bool) -> bytes | None:
        doc = self.pages.get(name)
        if doc is None:
            return None
        files = []
        for entry in doc.get("files", []):
            hashes = entry.get("hashes")
            sha256 = hashes.get("sha256") if isinstance(hashes, dict) else None
            filename = entry.get("filename")
            if not (
                isinstance(sha256, str) and _SHA256.match(sha256) and isinstance(filename, str)
            ):
                continue  # a file the mirror could not verify is not offered
            if "/" in filename or filename.startswith("."):
                continue
            if sandbox and self.quarantine.rule_for_file(filename) is not None:
                continue  # the syncer's resolver sees it, and the commit says why it stops
            held = cooldown.holds(name, entry) if cooldown is not None else None
            if held is not None:
                with self._lock:
                    self._held.setdefault((held.project, held.version), held)
                continue
            with self._lock:
                self._files[sha256] = Taken(name, entry)
            served = {k: v for k, v in entry.items() if k != "url"}
            if filename.endswith(".whl") and _declared_metadata(entry) is None:
                # No PEP 658 file upstream: one is made here from the wheel's ranges, so
                # the resolver asks once per wheel instead of reading the zip itself.
                served.pop("dist-info-metadata", None)
                served["core-metadata"] = True
            files.append({**served, "url": f"/files/{sha256}/{filename}"})
        out = {"meta": {"api-version": "1.1"}, "name": name, "files": files}
        if isinstance(doc.get("versions"), list):
            out["versions"] = doc["versions"]
        return json.dumps(out).encode()

    def metadata_of(self, sha256: str, ahead: bool = False) -> bytes | None:
        """A wheel's METADATA where upstream lists none: read out of the wheel by ranges
        (from the store if it is there), kept for this index's life (every resolve in a
        sync asks again). For resolving only: nothing here is stored or served after.
        `ahead`: read before a resolver asked, so it says nothing of where one walks."""
        taken = self.entry(sha256)
        if taken is None or not taken.filename.endswith(".whl") or taken.size is None:
            return None
        with self._lock:
            pending = self._metadata.get(sha256)
            if pending is None:
                pending = self._metadata[sha256] = Future()
                mine = True
            else:
                mine = False
        if not ahead:
            self._backtracking(taken)
        if mine:
            self._read_metadata(taken, pending)
        return pending.result()

    def core_metadata(self, sha256: str) -> bytes | None:
        """A listed wheel's METADATA as resolvers read it here: upstream's PEP 658 file
        (fetched once into the store) or the one made from the wheel's ranges (kept for
        this index's life); None for a file no page listed."""
        found = self.fetch(sha256, metadata=True)
        if found is None:
            return self.metadata_of(sha256, ahead=True)
        with self.store.open_blob(found[0]) as blob:
            data: bytes = blob.read(MAX_METADATA + 1)
            return data

    def _read_metadata(self, taken: Taken, into: Future[bytes]) -> None:
        began = time.monotonic()
        try:
            size = taken.size or 0
            ranged = RangedFile(_Tail(partial(self.fetch_range, taken.sha256), size), size)
            into.set_result(read_metadata(io.BufferedReader(ranged, RANGE_READ), taken.filename))
        except BaseException as exc:
            with self._lock:
                self._metadata.pop(taken.sha256, None)  # the next ask tries again
            into.set_exception(exc)
            return
        log.debug("METADATA of %s by ranges: %.2f s", taken.filename, time.monotonic() - began)

    def _backtracking(self, taken: Taken) -> None:
        """A resolver that asks for a second version of a project is walking down its
        releases one METADATA at a time (uv did 60 of apache-beam's in a row for TFX,
        0.3 s each): the next older ones are read now, PREFETCH at once."""
        version = _wheel_version(taken.filename)
        if version is None:
            return
        with self._lock:
            seen = self._asked.setdefault(taken.project, set())
            walking = bool(seen) and version not in seen
            seen.add(version)
        if not walking:
            return
        doc = self.pages.get(taken.project) or {}
        for older in _older_siblings(taken.filename, version, doc.get("files", []), PREFETCH):
            sha = older.get("hashes", {}).get("sha256")
            if isinstance(sha, str) and self.entry(sha) is not None:
                with self._lock:
                    busy = sha in self._metadata
                if not busy:
                    self._prefetch.submit(self._prefetched, sha)

    def _prefetched(self, sha256: str) -> None:
        with contextlib.suppress(Exception):  # a guess: the resolver asks again if it needs it
            self.metadata_of(sha256, ahead=True)

    def fetch_range(self, sha256: str, start: int, length: int) -> bytes:
        """Part of a file: from the store if it is there, else from upstream (not
        verified, as no part can be: only what the resolver reads, never stored)."""
        taken = self.entry(sha256)
        assert taken is not None  # the handler asked for a listed file
        if not self.store.has_blob(sha256):
            try:
                url = str(taken.entry["url"])
                return fetch_range(url, start, length, self.policy, self._upstream)
            except DownloadError:
                self._ensure(taken)  # an upstream without ranges: the whole file, verified
        with self.store.open_range(sha256, start, length) as part:
            data: bytes = part.read()
            return data

    def _ensure(self, taken: Taken) -> None:
        """The file in the store, fetched and verified if it is not there yet."""
        if not self.store.touch_blob(taken.sha256):
            url = str(taken.entry["url"])
            fetch_verified(self.store, url, taken.sha256, taken.size, self.policy)

    def fetch(
        self, sha256: str, metadata: bool, taken_by: list[Taken] | None = None
    ) -> tuple[str, int] | None:
        """The blob to send for a file (or its METADATA): its sha256 and size; the file
        is noted in `taken_by` (a session's list)."""
        taken = self.entry(sha256)
        if taken is None:
            return None
        entry = taken.entry
        if metadata:
            declared = _declared_metadata(entry)
            if declared is None:
                return None  # made by metadata_of instead
            policy = _capped(self.policy)
            if not self.store.has_blob(declared):
                fetch_verified(self.store, f"{entry['url']}.metadata", declared, None, policy)
            return declared, self.store.blob_size(declared) or 0
        self._ensure(taken)
        if taken_by is not None:
            with self._lock:
                taken_by.append(taken)
        return sha256, self.store.blob_size(sha256) or 0


class _Tail:
    """A wheel's last TAIL bytes, read in one request and kept: its end record, table of
    contents and METADATA (the .dist-info is written last) mostly lie there. TFX's 264
    wheels took 4.0 range requests each without it, 1.16 with it."""

    def __init__(self, read_range: Callable[[int, int], bytes], size: int) -> None:
        self._read_range = read_range
        self._start = max(0, size - TAIL)
        self._size = size
        self._tail: bytes | None = None

    def __call__(self, start: int, length: int) -> bytes:
        if start < self._start:
            return self._read_range(start, length)
        if self._tail is None:
            self._tail = self._read_range(self._start, self._size - self._start)
        offset = start - self._start
        return self._tail[offset : offset + length]


def _wheel_version(filename: str) -> Version | None:
    try:
        return parse_wheel_filename(filename)[1]
    except InvalidWheelFilename:
        return None


def _older_siblings(
    filename: str, version: Version, files: list[dict[str, Any]], count: int
) -> list[dict[str, Any]]:
    """For each of the `count` releases just below `version`, the wheel most like
    `filename` by its tags (the one a resolver for the same target reads)."""
    tags = parse_wheel_filename(filename)[3]
    best: dict[Version, tuple[int, dict[str, Any]]] = {}
    for entry in files:
        name = entry.get("filename")
        if not isinstance(name, str) or not name.endswith(".whl") or entry.get("yanked"):
            continue
        try:
            _, other, _, other_tags = parse_wheel_filename(name)
        except InvalidWheelFilename:
            continue
        if other >= version or (other.is_prerelease and not version.is_prerelease):
            continue
        shared = len(tags & other_tags)
        if shared and shared > best.get(other, (0, {}))[0]:
            best[other] = (shared, entry)
    return [best[v][1] for v in sorted(best, reverse=True)[:count]]


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _range(header: str, taken: Taken | None) -> tuple[int, int] | None:
    """(start, length) of a single-range request within the file's declared size."""
    match = _RANGE.match(header.strip())
    size = taken.size if taken is not None else None
    if match is None or size is None or size <= 0:
        return None
    first, last = match.groups()
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    elif last:
        start, end = max(0, size - int(last)), size - 1
    else:
        return None
    return (start, end - start + 1) if start <= end else None


def _capped(policy: FetchPolicy) -> FetchPolicy:
    return replace(policy, max_bytes=MAX_METADATA, cap_setting="core metadata")


def _declared_metadata(entry: dict[str, Any]) -> str | None:
    for key in ("core-metadata", "dist-info-metadata"):
        value = entry.get(key)
        if isinstance(value, dict) and isinstance(value.get("sha256"), str):
            sha = str(value["sha256"])
            return sha if _SHA256.match(sha) else None
    return None


class _Handler(BaseHTTPRequestHandler):
    server: _Server | _LoopbackServer

    def log_message(self, format: str, *args: object) -> None:
        return

    def address_string(self) -> str:
        return "sandbox"

    def do_HEAD(self) -> None:
        """What a file would be (uv asks before it downloads): its declared size."""
        parts = [p for p in self.path.split("?", 1)[0].split("/") if p]
        taken = None
        if len(parts) == 3 and parts[0] == "files" and _SHA256.match(parts[1]):
            taken = self.server.index.entry(parts[1])
        view = self.server.view
        if taken is not None and view is not None and not self.server.index.allows(taken, view):
            taken = None
        size = taken.size if taken is not None else None
        if taken is None or parts[2].endswith(".metadata") or size is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            # A resolver reads a wheel's METADATA by ranges where no PEP 658 file is
            # listed, instead of downloading the whole wheel (uv does).
            self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self) -> None:
        index = self.server.index
        view = self.server.view
        path = self.path.split("?", 1)[0]
        parts = [p for p in path.split("/") if p]
        try:
            cutoff = None
            if len(parts) == 4 and parts[0] == "cooldown" and parts[1].isdigit():
                cutoff, parts = int(parts[1]), parts[2:]
            if view is not None:
                cutoff = view.cutoff  # a sandbox gets its own view, whatever it asks
            if len(parts) == 2 and parts[0] == "simple":
                body = index.page(parts[1], cutoff, sandbox=view is not None)
                if body is None:
                    return self._send(404, b"not found", "text/plain")
                return self._send(200, body, PEP691_JSON)
            if len(parts) == 3 and parts[0] == "files" and _SHA256.match(parts[1]):
                taken = index.entry(parts[1])
                if taken is not None and view is not None and not index.allows(taken, view):
                    return self._send(404, b"not offered to this environment", "text/plain")
                wanted = _range(self.headers.get("Range", ""), taken)
                if wanted is not None and taken is not None and taken.size is not None:
                    start, length = wanted
                    data = index.fetch_range(parts[1], start, length)
                    return self._send_range(data, start, taken.size)
                metadata = parts[2].endswith(".metadata")
                found = index.fetch(parts[1], metadata, self.server.taken)
                if found is None and metadata:
                    made = index.metadata_of(parts[1])
                    if made is not None:
                        return self._send(200, made, "application/octet-stream")
                if found is None:
                    return self._send(404, b"not offered here", "text/plain")
                return self._stream(*found)
        except (DownloadError, StoreError, MetadataError) as exc:
            return self._send(502, str(exc).encode()[:500], "text/plain")
        return self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)

    def _send_range(self, data: bytes, start: int, size: int) -> None:
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/{size}")
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(data)

    def _stream(self, sha256: str, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with contextlib.suppress(OSError), self.server.index.store.open_blob(sha256) as blob:
            for chunk in iter_chunks(blob):
                self.wfile.write(chunk)
