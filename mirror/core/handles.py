"""Model handles: the URL a model is named by, and the path the mirror keeps it under.
That path becomes file names in the store, so it is checked here, once, for every
handle the config lists and every one a request names."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from mirror.core.kaggle import KAGGLE_HOSTS, parse_kaggle_path
from mirror.core.redact import bounded, redact_url

_HANDLE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# A segment becomes a file name in the store, with ".json" after it; Linux allows 255.
MAX_SEGMENT = 200
MAX_SEGMENTS = 16


def handle_path(handle: str) -> str:
    """The path part of a handle URL, checked so that it can never name a file outside
    the store: segments of letters, digits, dot, dash and underscore, no '..'."""

    def shown() -> str:  # only for a refusal: this runs on every model request
        return repr(bounded(redact_url(handle), 300))

    parts = urlsplit(handle)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{shown()} is not an http(s) URL")
    if "@" in parts.netloc:
        raise ValueError(f"{shown()} carries credentials; a handle is public, put them in source")
    if parts.query or parts.fragment:
        raise ValueError(f"{shown()} has a query or fragment; give the plain handle")
    segments = [s for s in parts.path.split("/") if s]
    if not segments or not all(_HANDLE_SEGMENT.match(s) and s != ".." for s in segments):
        raise ValueError(f"{shown()} has no usable path (e.g. /google/model/1)")
    if max(len(s) for s in segments) > MAX_SEGMENT or len(segments) > MAX_SEGMENTS:
        raise ValueError(
            f"{shown()} has a path segment over {MAX_SEGMENT} characters or more than "
            f"{MAX_SEGMENTS} segments (a file name cannot be that long)"
        )
    if (parts.hostname or "") in KAGGLE_HOSTS and segments[0] == "models":
        kaggle = parse_kaggle_path(parts.path)
        if kaggle is None:
            raise ValueError(
                f"{shown()} is not a Kaggle model handle; write "
                "models/<owner>/<model>/<framework>/<variation>/<version>"
            )
        return kaggle.path  # every spelling of one model: one path
    return "/".join(segments)


def handle_version(path: str) -> str:
    """The version a model's path names: its last segment when that is a number (Kaggle's
    and tfhub.dev's handles end in one), else "" (a handle of another scheme)."""
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return last if last.isdigit() else ""
