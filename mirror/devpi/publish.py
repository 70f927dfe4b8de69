"""Making devpi offer, and hold, exactly the files the mirror publishes: after each commit
the sync refreshes devpi's pages (its index mirrors tfmirror's own simple pages), has
devpi pull every new file and hashes what devpi serves against the manifest, and what
devpi was shown to hold is remembered (keyed by its uuid and index), so a no-op sync
moves no bytes; a quarantine's purges and releases reach devpi from here too."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from packaging.utils import canonicalize_name

from mirror.core.config import Config
from mirror.core.quarantine import filename_facts, mark_purged, read_quarantine
from mirror.core.runs import Failure
from mirror.core.storage import BlobStore, update_document
from mirror.devpi.client import DevpiClient
from mirror.devpi.errors import DevpiError
from mirror.devpi.server import user_password

WARM_STATE = "state/devpi-warm.json"
WARM_WORKERS = 4


class PublishedFile(Protocol):
    """A file a manifest lists, as devpi must offer it."""

    @property
    def filename(self) -> str: ...

    @property
    def project(self) -> str: ...

    @property
    def sha256(self) -> str: ...

    @property
    def size(self) -> int | None: ...


def _project(filename: str) -> str | None:
    facts = filename_facts(filename)
    return canonicalize_name(facts[0]) if facts else None


def devpi_file_relpath(sha256: str, filename: str) -> str:
    """Where, under its index, devpi serves a mirror index's file whose link carries a
    sha256: its filestore.key_from_link splits the hash into +f/<3 hex>/<13 hex>/. The
    fleet's pages link there; every push checks that devpi still agrees."""
    return f"+f/{sha256[:3]}/{sha256[3:16]}/{filename}"


def devpi_file_path(index: str, sha256: str, filename: str) -> str:
    return f"/{index}/{devpi_file_relpath(sha256, filename)}"


class DevpiIndex:
    """devpi as the PyPI sync's package index: set up while the sync resolves, brought
    in line with the committed manifests after it."""

    def __init__(self, client: DevpiClient, store: BlobStore, mirror_url: str) -> None:
        self.client = client
        self.store = store
        self.mirror_url = mirror_url

    @property
    def url(self) -> str:
        return self.client.base

    def prepare(self) -> None:
        self.client.bootstrap(self.mirror_url)

    def publish(self, files: Mapping[str, PublishedFile], changed: bool) -> WarmResult:
        """devpi offers and holds `files`, less what is quarantined; the projects of new
        quarantine rules are purged from it first."""
        quarantine = read_quarantine(self.store)
        offered = {
            sha: w for sha, w in files.items() if quarantine.rule_for_file(w.filename) is None
        }
        purge = quarantine.unpurged()
        owed = bool(purge or quarantine.devpi_refresh)
        result = push_to_devpi(
            self.client, self.store, self.mirror_url, offered, changed or owed, purge
        )
        if owed:  # every page was re-read
            mark_purged(self.store, purge, quarantine.devpi_refresh)
        return result

    def settle_quarantine(self) -> tuple[set[str], set[str]]:
        """What devpi owes the quarantine, and only that, done now: a takedown must not
        wait for every page to be re-read and every file pulled again. The projects of
        new rules are purged (their pages and files: devpi reads the page again, without
        the file, when next asked, and pulls the rest on demand or at the next sync);
        released projects' pages re-read. Returns (purged, re-read)."""
        quarantine = read_quarantine(self.store)
        purge = quarantine.unpurged()
        refresh = set(quarantine.devpi_refresh) - purge
        for project in sorted(purge):
            self.client.delete_project(project)
        for project in sorted(refresh):
            self.client.refresh(project, missing_ok=True)
        if purge:
            forget_pulled(self.store, purge)
        if purge or refresh:
            mark_purged(self.store, purge, refresh)
        return purge, refresh


def devpi_index(config: Config, store: BlobStore) -> DevpiIndex:
    client = DevpiClient(config.devpi, user_password(config.devpi), timeout=config.pypi.timeout)
    return DevpiIndex(client, store, config.devpi_mirror_url)


def settle_running_devpi(config: Config, store: BlobStore) -> bool:
    """devpi, if it is running, does what it owes the quarantine now; False if it is
    not (then tfmirror does it as it starts devpi, or the next sync for an external one)."""
    if not DevpiClient(config.devpi, "", timeout=2).alive():
        return False
    devpi_index(config, store).settle_quarantine()
    return True


def forget_pulled(store: BlobStore, projects: set[str]) -> None:
    """devpi no longer holds these projects' files: the next push pulls them again."""

    def change(raw: bytes | None) -> bytes | None:
        state = json.loads(raw) if raw else {}
        proven = state.get("proven", {})
        kept = {sha: name for sha, name in proven.items() if _project(name) not in projects}
        return json.dumps({**state, "proven": kept}, indent=1).encode() if kept != proven else None

    update_document(store, WARM_STATE, change)


@dataclass
class WarmResult:
    count: int = 0
    failures: list[Failure] = field(default_factory=list)
    # When devpi offered every file (seconds into the push): from then on pip installs
    # through devpi while the web front is up; devpi pulls on demand what it lacks.
    offered_after: float = 0.0


def push_to_devpi(
    devpi: DevpiClient,
    store: BlobStore,
    mirror_url: str,
    wanted: Mapping[str, PublishedFile],
    force_refresh: bool = False,
    purge: set[str] | None = None,
) -> WarmResult:
    """Make devpi offer and hold every manifest file, proving each by the sha256 it serves.

    Files devpi already proved (same devpi uuid, index and sha256) are not moved again,
    so a no-op sync moves no bytes.
    """
    began = time.monotonic()
    result = WarmResult()
    state_raw = store.get(WARM_STATE)
    state = json.loads(state_raw) if state_raw else {}
    uuid = devpi.server_uuid()
    key = f"{uuid} {devpi.base}/{devpi.index} {mirror_url}"
    proven: dict[str, str] = state.get("proven", {}) if state.get("key") == key else {}
    if purge:
        # What devpi held of these projects is gone: the rest is pulled again below.
        proven = {sha: name for sha, name in proven.items() if _project(name) not in purge}
    todo = {sha: w for sha, w in wanted.items() if proven.get(sha) != w.filename}
    if not todo and not force_refresh:
        return result
    projects = sorted({w.project for w in wanted.values()})
    devpi.bootstrap(mirror_url)
    for project in sorted(purge or ()):
        devpi.delete_project(project)
    # First devpi re-reads every project page (so removed files disappear too); then it
    # pulls each new file, largest first: its pull of the TensorFlow wheel is the
    # critical path. Measured, no overlap helps: refreshing in parallel was 3x slower
    # (devpi serialises its writes), and pulling while the other pages refresh took as
    # long in all (devpi's pull is bound by its own CPU).
    offered: dict[str, str] = {}
    for project in projects:
        devpi.refresh(project)
        offered.update((f.sha256, f.url) for f in devpi.files(project))
    result.offered_after = time.monotonic() - began
    pool = ThreadPoolExecutor(WARM_WORKERS, thread_name_prefix="devpi-pull")
    try:
        _pull_each(devpi, pool, todo, offered, proven, result)
    except BaseException:
        # A stop (Ctrl-C, SIGTERM): the pulls not begun are dropped, and the ones under
        # way not waited for; devpi forgets what it had not kept, the next push pulls it.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        # Kept even when stopped half way: the next push pulls only the rest.
        proven = {sha: name for sha, name in proven.items() if sha in wanted}
        store.put(WARM_STATE, json.dumps({"key": key, "proven": proven}, indent=1).encode())
    pool.shutdown()
    return result


def _pull_each(
    devpi: DevpiClient,
    pool: ThreadPoolExecutor,
    todo: Mapping[str, PublishedFile],
    offered: Mapping[str, str],
    proven: dict[str, str],
    result: WarmResult,
) -> None:
    """Have devpi pull each file, largest first, and prove it by the sha256 it serves."""
    futures = {}
    for wheel in sorted(todo.values(), key=lambda w: -(w.size or 0)):
        url = offered.get(wheel.sha256)
        expected = devpi_file_path(devpi.index, wheel.sha256, wheel.filename)
        if url is None:
            result.failures.append(Failure(wheel.filename, "", "devpi does not offer it"))
        elif not urlsplit(url).path.endswith(expected):
            reason = f"devpi offers it at {urlsplit(url).path}, not at {expected}"
            result.failures.append(Failure(wheel.filename, "", reason))
        else:
            futures[pool.submit(devpi.fetch_sha256, url)] = wheel
    for future in as_completed(futures):
        wheel = futures[future]
        try:
            got = future.result()
        except DevpiError as exc:
            result.failures.append(Failure(wheel.filename, "", str(exc)))
            continue
        if got != wheel.sha256:
            reason = f"devpi serves sha256 {got}, expected {wheel.sha256}"
            result.failures.append(Failure(wheel.filename, "", reason))
            continue
        proven[wheel.sha256] = wheel.filename
        result.count += 1
