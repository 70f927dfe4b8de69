"""The root of tfmirror's own errors, and errors that cross from one side to another.

Every error of ours is a TfmirrorError: the command maps it to its one line and exit
code in one place (tfmirror.cli.main), by what the class declares: `exit_code` (2 for
what the user must fix in a config or on the command line, 1 for what failed), a
`label` before the message and a `hint` after it."""

from __future__ import annotations


class TfmirrorError(Exception):
    exit_code = 1
    label = ""
    hint = ""

    def line(self) -> str:
        """The one line `tfmirror` prints for it."""
        label = f"{self.label}: " if self.label else ""
        return f"tfmirror: {label}{self}{self.hint}"


class UsageError(TfmirrorError):
    """Bad arguments for a command: one line, exit 2."""

    exit_code = 2
    label = "error"


class ServiceError(TfmirrorError):
    """A service the mirror drives refused or failed; the message says what, and each
    service's subclass names the service in its `label`."""
