"""The PyPI side's errors: a closure that cannot be resolved, a wheel refused, metadata
that cannot be served. Each is a TfmirrorError (mirror.core.errors), so the command
prints it as one line."""

from __future__ import annotations

from mirror.core.errors import TfmirrorError


class ResolveError(TfmirrorError):
    """The closure cannot be mirrored for a target; the message names project and target."""


class SandboxResolveError(ResolveError):
    """uv found no closure in the sandbox; `output` is the end of what it said."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


class WheelRefused(TfmirrorError):
    """Not a wheel the mirror will store; the message says why."""


class MetadataError(TfmirrorError):
    """The wheel's METADATA cannot be served; the message says why."""


class LockUnreadable(TfmirrorError):
    """A requirements lock given to audit that is not a list of exact pins."""

    exit_code = 2
    label = "error"
