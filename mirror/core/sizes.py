"""Sizes as people read them: a 3.5 KB model is not "0.0 MB"."""

from __future__ import annotations

_UNITS = ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "KB"))


def human_bytes(n: float) -> str:
    """Decimal units, as pip and the wheel sizes PyPI shows: 512 B, 3.5 KB, 572.1 MB,
    3.44 GB."""
    for scale, unit in _UNITS:
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.2f} {unit}" if unit in ("GB", "TB") else f"{value:.1f} {unit}"
    return f"{int(n)} B"
