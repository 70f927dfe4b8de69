"""URLs and messages as they may be shown: without credentials, and of bounded length. A
token in an operator's URL (`https://user:token@...`, `?api_key=...`) or a storage
redirect's signature (`X-Amz-Signature`, `X-Goog-Signature`, Azure's `sig`) is used by
requests and carried by nothing the mirror stores or shows (run records, manifests, the
status page, JSON, logs); reasons are bounded so one hostile name cannot make a page
hundreds of kilobytes."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# Whole enough for a resolver's explanation (uv's, with its hints, runs to ~1,000
# characters: what the user must read to fix a pin), bounded for a page and a record.
REASON_LIMIT = 2000
# ://anything-but-slash-space-or-at@ : the userinfo of a URL inside free text. Anchored
# on "://" so the scan stays linear on a 300 KB message (a scheme pattern before it
# backtracks quadratically over a long run of letters).
_USERINFO = re.compile(r"://[^/\s@]+@")
# A query parameter (name bounded, so the scan stays linear) and the names that hold a
# secret: signatures, credentials, tokens, keys, passwords.
_PARAM = re.compile(r"([?&;])([^=&;\s#?]{1,64})=([^&;\s#]*)")
_SECRET_NAME = re.compile(
    r"(?i)signature|^sig$|credential|token|key|secret|passw|^pwd$|auth|session"
)
REDACTED = "REDACTED"


# Whole families of signing parameters: without their signature the rest is noise.
_SIGNING_PREFIX = ("x-amz-", "x-goog-")


def _param(match: re.Match[str]) -> str:
    separator, name, _ = match.groups()
    if _SECRET_NAME.search(name):
        return f"{separator}{name}={REDACTED}"
    return match.group(0)


def secret_param(name: str) -> bool:
    """A query parameter that holds a credential or a signature."""
    return bool(_SECRET_NAME.search(name)) or name.lower().startswith(_SIGNING_PREFIX)


def redact_url(url: str) -> str:
    """`url` without user:password and without the values of secret query parameters;
    anything that is not a URL comes back with the same done to any URL inside it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if "@" in parts.netloc:
        host = parts.netloc.rpartition("@")[2]
        url = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return _PARAM.sub(_param, url)


def scrub_url(url: str) -> str:
    """`url` as it may be stored: without user:password and without credential or
    signing query parameters at all (a placeholder would be sent as the value by
    whoever fetches it later). A fetch gets the configured upstream's user and password
    back from the config (mirror.core.credentials.Credentials); a signature expires anyway.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if "@" not in parts.netloc and not parts.query:
        return url  # PyPI's: nothing to take out, and no work
    host = parts.netloc.rpartition("@")[2]
    kept = [p for p in parts.query.split("&") if p and not secret_param(p.split("=", 1)[0])]
    return urlunsplit((parts.scheme, host, parts.path, "&".join(kept), parts.fragment))


def redact_text(text: str) -> str:
    """Free text (an exception's message) with any URL's user:password and secret
    query parameters removed."""
    return _PARAM.sub(_param, _USERINFO.sub("://", text))


def bounded(text: str, limit: int = REASON_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def shown(text: str, limit: int = REASON_LIMIT) -> str:
    """A reason as pages, JSON and run records carry it."""
    return bounded(redact_text(text), limit)
