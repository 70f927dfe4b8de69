"""The hub side's errors, where a reader finds them."""

from __future__ import annotations

from mirror.core.errors import TfmirrorError


class ArchiveRejected(TfmirrorError):
    """Not a model archive the mirror will publish; the message is the reason."""
