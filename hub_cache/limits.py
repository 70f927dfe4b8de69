"""How far a model archive or zip may unpack, and the path limits extraction meets: one
place for the tar checks (hub_cache.archive) and the zip checks of Keras files
(hub_cache.formats.zip_checks)."""

from __future__ import annotations

from dataclasses import dataclass

from mirror.core.config import HubConfig

# Below this many bytes unpacked, the ratio check is meaningless: a tar pads every
# member to 512 bytes and the whole archive to 10 KiB, which gzip shrinks 50-fold.
RATIO_FLOOR = 16 * 1024 * 1024
NAME_MAX = 255  # bytes in one path segment (Linux); longer cannot be extracted
PATH_MAX = 4000


@dataclass(frozen=True)
class ArchiveLimits:
    """How far a model archive may unpack ([hub] max_uncompressed_mb, max_ratio)."""

    max_uncompressed: int
    max_ratio: float


def caps(hub: HubConfig) -> ArchiveLimits:
    """The limits `[hub]` sets."""
    return ArchiveLimits(max_uncompressed=hub.max_uncompressed_mb * 2**20, max_ratio=hub.max_ratio)
