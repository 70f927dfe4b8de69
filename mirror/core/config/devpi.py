"""[devpi]: the devpi-server that serves pip, and the index tfmirror keeps in it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mirror.core.config.forms import OPTIONAL_PATH, folder_problem
from mirror.core.config.keys import Check, Section, key, optional_url, plain, read_table
from mirror.core.config.storage import StorageConfig

_INDEX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class DevpiConfig:
    url: str = key(
        "http://127.0.0.1:3141",
        '"http://127.0.0.1:3141"',
        Check(lambda url: url.startswith(("http://", "https://")), "must be an http(s) URL"),
        plain(lambda url: url.rstrip("/")),
    )
    index: str = key(
        "tfmirror/pypi",
        '"tfmirror/pypi"',
        Check(lambda index: bool(_INDEX_RE.match(index)), 'must be "user/index"'),
    )
    # Where devpi reaches tfmirror's simple pages; empty means [web]'s address.
    mirror_url: str = key(
        "",
        '"http://tfmirror-web:8080/simple/"',
        optional_url("must be an http(s) URL that devpi can reach"),
    )
    # Set: tfmirror runs devpi-server itself with this serverdir. Empty: devpi is
    # external. By default under [storage] path on a local store, else empty.
    serverdir: Path | None = key(  # noqa: RUF009 - key() returns a dataclasses.field
        None, '"data/devpi"', form=OPTIONAL_PATH
    )

    @property
    def user(self) -> str:
        return self.index.split("/")[0]

    @property
    def index_url(self) -> str:
        return f"{self.url.rstrip('/')}/{self.index}/+simple/"

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 80


def read(raw: Any, base: Path, storage: StorageConfig) -> DevpiConfig:
    serverdir = str(storage.path / "devpi") if storage.backend == "local" else ""
    return read_table(DevpiConfig, "devpi", raw, base, validate, {"serverdir": serverdir})


def validate(s: Section, devpi: DevpiConfig) -> None:
    problem = folder_problem(devpi.serverdir) if devpi.serverdir else None
    written = s.raw["serverdir"]
    s.check("serverdir", problem is None, written, f"{problem}; choose a folder devpi may own")
