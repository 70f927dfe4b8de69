"""[follow] and [follow_api]: a site mirror that follows a central one over HTTP, and
the centre's side of it (an optional read token its followers send). A site serves
exactly what the centre committed: it names no requirements or models of its own."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirror.core.config.forms import is_base_url
from mirror.core.config.keys import SECONDS, Check, key, plain, read_table
from mirror.core.errors import ConfigError

_URL_EXAMPLE = '"http://central.internal:8000"'


@dataclass(frozen=True)
class FollowConfig:
    url: str = key(
        "",
        _URL_EXAMPLE,
        Check(
            lambda url: is_base_url(url.rstrip("/")),
            f"name the centre's web front, e.g. url = {_URL_EXAMPLE} (no credentials: "
            "put a read token in `token`)",
        ),
        plain(lambda url: url.rstrip("/")),
    )
    # The centre's [follow_api] token, sent as a bearer header; never shown or logged.
    token: str = key("", '"a-long-random-string"', shown=False)
    # The centre's promoted snapshot is this site's too; false: the site promotes itself.
    follow_promotion: bool = key(True, "true")
    interval: float = key(30.0, "30", SECONDS)  # seconds between two pulls under `up`


@dataclass(frozen=True)
class FollowApiConfig:
    # Empty: followers read without one (the front's other pages are open too).
    token: str = key("", '"a-long-random-string"', shown=False)


def read(data: Mapping[str, Any], base: Path) -> FollowConfig | None:
    """[follow], or None for a mirror that follows no one. A site takes the centre's
    environments and models: its own would be silently ignored, so they are refused."""
    raw = data.get("follow")
    if raw is None:
        return None
    follow = read_table(FollowConfig, "follow", raw, base)
    pypi, hub = data.get("pypi", {}), data.get("hub", {})
    own = [
        f"[{section}] {name}"
        for section, table, names in (
            ("pypi", pypi, ("requirements", "environments")),
            ("hub", hub, ("models",)),
        )
        if isinstance(table, Mapping)
        for name in names
        if name in table
    ]
    if own:
        raise ConfigError(
            f"{own[0]}: a site ([follow] url) serves what the centre committed and defines "
            "none of its own; remove it, or remove [follow]"
        )
    return follow


def read_api(raw: Any, base: Path) -> FollowApiConfig:
    return read_table(FollowApiConfig, "follow_api", raw, base)
