"""[follow]: a site mirror that follows a central one over HTTP. A site serves exactly
what the centre committed: it names no requirements or models of its own. The read
token a site sends and a centre asks for are secrets: they come from the environment
(mirror.core.credentials FOLLOW_TOKEN_ENV, FOLLOW_API_TOKEN_ENV), not from here."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirror.core.config.forms import is_base_url
from mirror.core.config.keys import SECONDS, Check, key, plain, read_table
from mirror.core.credentials import FOLLOW_API_TOKEN_ENV, FOLLOW_TOKEN_ENV
from mirror.core.errors import ConfigError

# How a site names itself to its centre (mirror.core.followers): a header's worth.
FOLLOWER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_URL_EXAMPLE = '"http://central.internal:8000"'


@dataclass(frozen=True)
class FollowConfig:
    url: str = key(
        "",
        _URL_EXAMPLE,
        Check(
            lambda url: is_base_url(url.rstrip("/")),
            f"name the centre's web front, e.g. url = {_URL_EXAMPLE} (no credentials: "
            f"a read token goes in the environment, {FOLLOW_TOKEN_ENV})",
        ),
        plain(lambda url: url.rstrip("/")),
    )
    # The centre's promoted snapshot is this site's too; false: the site promotes itself.
    follow_promotion: bool = key(True, "true")
    interval: float = key(30.0, "30", SECONDS)  # seconds between two pulls under `up`
    # After a failed pull `up` tries again sooner than `interval`, then less and less
    # often (2 s, 4 s, 8 s ... up to this), and at `interval` again once one succeeds.
    backoff_max: float = key(300.0, "300", SECONDS)
    # How this site names itself to its centre (its list of followers); "": the host name.
    name: str = key(
        "",
        '"site-berlin"',
        Check(
            lambda name: not name or FOLLOWER_NAME.match(name) is not None,
            "a follower's name is letters, digits, '.', '_' or '-' (at most 64), "
            'e.g. name = "site-berlin"',
        ),
    )


def read(data: Mapping[str, Any], base: Path) -> FollowConfig | None:
    """[follow], or None for a mirror that follows no one. A site takes the centre's
    environments and models: its own would be silently ignored, so they are refused."""
    for section in ("follow", "follow_api"):
        table = data.get(section)
        if isinstance(table, Mapping) and "token" in table:
            where = FOLLOW_TOKEN_ENV if section == "follow" else FOLLOW_API_TOKEN_ENV
            raise ConfigError(
                f"[{section}] token: a secret is never kept in the config file; remove it "
                f"and set {where} in the environment"
            )
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
