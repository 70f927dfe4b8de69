"""verify's own errors, where a reader looks for them: each a TfmirrorError (the root,
mirror.core.errors), so a command that meets one prints its message and exits 1."""

from __future__ import annotations

from mirror.core.errors import TfmirrorError


class UnknownPending(TfmirrorError):
    """An unfinished import does not say which blobs it needs: no blob can be deleted."""


class RuntimeUnavailable(TfmirrorError):
    """A runtime could not be built; the message says why."""
