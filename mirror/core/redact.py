"""URLs and messages as they may be shown: without credentials, and of bounded length.

An operator may put a token in a URL (`https://user:token@artifactory/...`); requests
uses it, but nothing the mirror stores or shows carries it: run records, manifests, the
status page, JSON, logs. Reasons are bounded too, so one hostile name cannot make a page
hundreds of kilobytes.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REASON_LIMIT = 500
# ://anything-but-slash-space-or-at@ : the userinfo of a URL inside free text. Anchored
# on "://" so the scan stays linear on a 300 KB message (a scheme pattern before it
# backtracks quadratically over a long run of letters).
_USERINFO = re.compile(r"://[^/\s@]+@")


def redact_url(url: str) -> str:
    """`url` without user:password; anything that is not a URL with one comes back as is."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def redact_text(text: str) -> str:
    """Free text (an exception's message) with any URL's user:password removed."""
    return _USERINFO.sub("://", text)


def bounded(text: str, limit: int = REASON_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def shown(text: str, limit: int = REASON_LIMIT) -> str:
    """A reason as pages, JSON and run records carry it."""
    return bounded(redact_text(text), limit)
