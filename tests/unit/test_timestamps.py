from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mirror.core.timestamps import rfc3339_utc


@pytest.mark.parametrize(
    ("value", "served"),
    [
        ("2023-05-03T17:22:56.371347Z", "2023-05-03T17:22:56.371347Z"),  # PyPI's own
        ("2024-01-02", "2024-01-02T00:00:00Z"),
        ("2024-01-02T03:04:05", "2024-01-02T03:04:05Z"),
        ("2024-01-02T03:04:05+02:00", "2024-01-02T01:04:05Z"),
        ("2024-01-02t03:04:05z", "2024-01-02T03:04:05Z"),
        (datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05Z"),  # a TOML datetime
        (
            datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5))),
            "2024-01-02T08:04:05Z",
        ),
        (datetime(2024, 1, 2, tzinfo=UTC), "2024-01-02T00:00:00Z"),
        ("2024-03-01T10:00:00.000000Z", "2024-03-01T10:00:00.000000Z"),  # kept as written
        ("2024-13-01T10:00:00Z", None),
        ("yesterday", None),
        ("", None),
        (1704164645, None),
        (None, None),
    ],
)
def test_upload_times_are_served_as_rfc3339_utc_or_not_at_all(value: object, served: str) -> None:
    assert rfc3339_utc(value) == served
