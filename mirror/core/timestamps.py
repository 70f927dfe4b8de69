"""Times as indexes write them: PEP 700's upload-time is RFC 3339, in UTC, with a time, and
upstream's value is passed on only in that form, since uv refuses a whole project page
over one `upload-time` it cannot read ("2024-01-02", a time with no zone): one odd file
upstream would take a project off the fleet's index."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")


def utc_moment(value: object) -> datetime | None:
    """`value` (text or a datetime) as an aware UTC datetime; None if it is no time. A
    date alone is its midnight; a time with no zone is taken as UTC, as PEP 700 says
    upload times are."""
    if isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def rfc3339_utc(value: object) -> str | None:
    """`value` (text or a datetime) as `2024-01-02T03:04:05[.ffffff]Z`; None if it is
    no time (utc_moment)."""
    moment = utc_moment(value)
    if moment is None:
        return None
    if isinstance(value, str) and _CANONICAL.fullmatch(value):
        return value  # upstream's own text, when it is already in the form
    fraction = f".{moment.microsecond:06d}" if moment.microsecond else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"
