"""The advisories side's errors."""

from __future__ import annotations

from mirror.core.errors import TfmirrorError


class ArchiveRefused(TfmirrorError):
    """An advisory database export not taken whole; the last good one stays current."""

    label = "advisories"


class RecordRefused(TfmirrorError):
    """One advisory record not taken (named and skipped); the others are."""


class NoDatabase(TfmirrorError):
    """No advisory database has been synced yet, or its blob is gone."""

    label = "advisories"
    hint = " (run `tfmirror sync advisories` on a mirror with an [advisories] source)"
