"""Upstream credentials: in the config, sent at fetch time, never stored. A page that links
its files relatively (as Artifactory's do) gives file URLs that carry the configured
user and token; the mirror stores them without (mirror.core.redact.scrub_url), as
manifests travel in bundles and snapshots, and a later fetch of such a URL (a repair, a
sync that keeps its closure) gets them back from here: those of the configured URL on
the same scheme, host and port, as pip sends its index's credentials to the files on the
index's host and to no other."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import SplitResult, unquote, urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(parts: SplitResult) -> tuple[str, str, int | None] | None:
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port that is no number
        return None
    return (parts.scheme, (parts.hostname or "").lower(), port)


@dataclass(frozen=True)
class Credentials:
    """Each configured URL's user and password, by its origin (scheme, host, port)."""

    logins: tuple[tuple[tuple[str, str, int | None], str, str], ...] = ()

    @classmethod
    def of(cls, urls: Iterable[str]) -> Credentials:
        logins = []
        for url in urls:
            try:
                parts = urlsplit(url)
            except ValueError:
                continue  # the config check names a URL that does not parse
            origin = _origin(parts)
            if origin is not None and parts.username is not None:
                logins.append((origin, unquote(parts.username), unquote(parts.password or "")))
        return cls(tuple(logins))

    def for_url(self, url: str) -> tuple[str, str] | None:
        """The (user, password) to send with a GET of `url`: None for a URL that carries
        its own, or whose origin no configured URL with credentials shares."""
        if not self.logins:
            return None
        try:
            parts = urlsplit(url)
        except ValueError:
            return None
        if parts.username is not None:
            return None
        origin = _origin(parts)
        for known, user, password in self.logins:
            if known == origin:
                return user, password
        return None


# A followed centre's read token: a site sends it, the centre asks for it. Secrets come
# from the environment only, never from the config file.
FOLLOW_TOKEN_ENV = "TFMIRROR_FOLLOW_TOKEN"
FOLLOW_API_TOKEN_ENV = "TFMIRROR_FOLLOW_API_TOKEN"


@dataclass(frozen=True)
class BearerToken:
    """A read token sent as `Authorization: Bearer` to one origin (a followed centre's)
    and to no other: a redirect elsewhere goes without it. Never in a repr or a log."""

    url: str  # the origin it is for, as configured
    token: str = field(repr=False)

    def headers_for(self, url: str) -> dict[str, str]:
        if not self.token:
            return {}
        try:
            same = _origin(urlsplit(url)) == _origin(urlsplit(self.url))
        except ValueError:
            return {}
        return {"Authorization": f"Bearer {self.token}"} if same else {}
