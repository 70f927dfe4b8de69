"""[web]: the web front (status page, JSON API, TF Hub models, tfmirror's own simple
pages) and the address the fleet is told to use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirror.core.config.forms import is_base_url
from mirror.core.config.keys import PORT, Check, Form, key, plain, read_table


def local_url(host: str, port: int) -> str:
    """The URL a process on this machine uses for a server listening on host:port (one
    listening on every address is reached on loopback)."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"


def _is_origin(origin: object) -> bool:
    return isinstance(origin, str) and is_base_url(origin) and origin.count("/") == 2


@dataclass(frozen=True)
class WebConfig:
    host: str = key("127.0.0.1", '"0.0.0.0"')
    port: int = key(8080, "8080", PORT)
    # S3 store: send model downloads to presigned S3 URLs instead of streaming them.
    presign_s3: bool = key(False, "true")
    # Where the fleet reaches the mirror (a DNS name, a load balancer): what snippets,
    # pip-conf and the banner print. Empty: the proxy's address, else [web]'s.
    public_url: str = key(
        "",
        '"http://mirror.internal:8000"',
        Check(
            lambda url: not url or is_base_url(url.rstrip("/")),
            "must be an http(s) URL with a host and no credentials, query or fragment",
        ),
        plain(lambda url: url.rstrip("/")),
    )

    # Origins whose pages may fetch models from the mirror (a TF.js app on another host):
    # sent back in Access-Control-Allow-Origin; "*" lets any. Default: none.
    cors_origins: tuple[str, ...] = key(
        (),
        '["https://app.internal"]',
        Check(
            lambda origins: all(o == "*" or _is_origin(o) for o in origins),
            'list origins as scheme://host[:port] (no path), or "*"',
        ),
        form=Form(list, lambda s, name, raw: tuple(str(o) for o in raw)),
    )

    @property
    def base_url(self) -> str:
        return local_url(self.host, self.port)


def read(raw: Any, base: Path) -> WebConfig:
    return read_table(WebConfig, "web", raw, base)
