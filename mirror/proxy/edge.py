"""A rack's edge cache: an nginx in front of a site mirror that keeps the site's pages and
files on its own disk (`tfmirror proxy --edge http://site:8000`), so a rack's nodes cross
the site's link once per file, and install what the rack already fetched while the site
(and the centre behind it) is unreachable. No store, no devpi, no mirror config: the
site's URL and a folder are all it needs.

Two requirements pull apart, and one setting answers both: every answer (page or file)
is fresh for the site's page lifetime, then asked again, conditionally; so a file kept
for months costs the site a 304 per page lifetime while a rack uses it, a quarantine
(410) or a removal (404) at the site replaces the kept answer within that lifetime, and
while the site cannot be reached the last answer it gave (200, 404 or 410) stands."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mirror.core.config import Config
from mirror.core.errors import UsageError
from mirror.proxy.nginx import (
    SHUTDOWN_SECONDS,
    host_port,
    instance_id,
    mime_types,
    open_files,
    worker_connections,
    worker_user,
)

# A file's first fetch may take minutes over a thin link (a 570 MB TensorFlow wheel):
# the rack's other requests for it wait this long for that one fetch rather than start
# their own (nginx's default, 5 s, would send each of them to the site).
LOCK_SECONDS = 900
# Files stay until space runs out (max_size, or this much left free on the disk).
MIN_FREE_MB = 1024
# Kept pages: small, and kept as long as files so a rack installs while the site is down.
PAGE_CACHE_MB = 512
_SIZE = re.compile(r"(\d+)([mMgGtT])")
_MB_PER_UNIT = {"m": 1, "g": 1024, "t": 1024 * 1024}


@dataclass(frozen=True)
class EdgePlan:
    """Everything an edge cache's nginx config depends on."""

    listen: str  # host:port
    workdir: Path  # config, logs and both caches
    site: str  # the site mirror's base URL, as given
    site_address: str  # host:port nginx connects to
    page_seconds: int  # how long any answer is fresh: the site's page lifetime
    max_size_mb: int | None  # files' share of the disk; None: until MIN_FREE_MB is left
    run_as: str | None
    mime_types: str
    open_files: int
    instance: str  # answered at HEALTH_PATH, as the entry point's
    shutdown_seconds: int = SHUTDOWN_SECONDS
    lock_seconds: int = LOCK_SECONDS
    min_free_mb: int = MIN_FREE_MB
    page_cache_mb: int = PAGE_CACHE_MB

    @property
    def template(self) -> str:
        return "edge.conf.j2"

    @property
    def worker_connections(self) -> int:
        return worker_connections(self.open_files)

    @property
    def describe(self) -> str:
        room = f"{self.max_size_mb} MB" if self.max_size_mb else f"all but {self.min_free_mb} MB"
        return (
            f"listen {self.listen}; edge cache of {self.site}; answers fresh "
            f"{self.page_seconds}s; files kept in {room} of {self.workdir}"
        )


def megabytes(size: str) -> int:
    """`500m`, `50g`, `2t` as megabytes; UsageError for anything else."""
    found = _SIZE.fullmatch(size.strip())
    if found is None or int(found.group(1)) == 0:
        raise UsageError(f"--max-size {size!r}: give a size such as 500m, 50g or 2t")
    return int(found.group(1)) * _MB_PER_UNIT[found.group(2).lower()]


def site_base(url: str) -> str:
    """The site mirror's base URL (`http://site:8000`), checked: the edge forwards
    every path as the node asked it, so the URL names a host and nothing else."""
    parts = urlsplit(url)
    try:
        numbered = parts.port is not None or ":" not in parts.netloc.rsplit("]", 1)[-1]
    except ValueError:  # a port that is not a number
        numbered = False
    if (
        not numbered
        or parts.scheme != "http"
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise UsageError(
            f"--edge {url!r}: give the site mirror's entry point as http://HOST[:PORT], "
            "e.g. http://site:8000 (no path, no credentials)"
        )
    return f"http://{parts.netloc}"


def edge_plan_for(
    config: Config,
    site_url: str,
    host: str | None = None,
    port: int | None = None,
    cache_dir: Path | None = None,
    max_size_mb: int | None = None,
) -> EdgePlan:
    """The edge for `site_url`; [proxy]'s host, port and page lifetime unless given (no
    config file: its defaults), its folder `edge` under [storage] path unless given."""
    site = site_base(site_url)
    workdir = (cache_dir or config.storage.path / "edge").resolve()
    return EdgePlan(
        listen=f"{host or config.proxy.host}:{port or config.proxy.port}",
        workdir=workdir,
        site=site,
        site_address=host_port(site),
        # 0 at the site means no page cache; here nginx's shortest lifetime (it keeps
        # nothing fresh for 0 s), each answer still kept for when the site is down.
        page_seconds=max(1, config.proxy.page_cache_seconds),
        max_size_mb=max_size_mb,
        run_as=worker_user(),
        mime_types=mime_types(),
        open_files=open_files(),
        instance=instance_id(workdir),
    )
