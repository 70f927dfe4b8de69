"""tfmirror's own errors: the root, the kinds every side shares, and the core's. Every
error of ours is a TfmirrorError, which the command maps to its one line and exit code
in one place (tfmirror.cli.main) by what the class declares: `exit_code` (2 for what the
user must fix in a config or on the command line, 1 for what failed), a `label` before
the message and a `hint` after it. Here are UsageError and ServiceError, then the core's
own in the order of its modules (config, store, upstream fetch, a job's lease and run,
the build sandbox). mirror.pypi, mirror.devpi, hub_cache and bundle keep theirs in
an errors.py of their own."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mirror.core.storage.locks import Holder


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


class ConfigError(TfmirrorError):
    """A config value that cannot be used; the message says which and how to fix it."""

    exit_code = 2
    label = "config error"


class StoreError(TfmirrorError):
    """The store failed (I/O, S3); the message says which key and why."""

    label = "store"


class BlobNotFound(StoreError):
    """The store has no blob under that sha256."""


class DownloadError(TfmirrorError):
    """One file could not be fetched and verified; the message says why."""


class HostRefused(TfmirrorError):
    """A URL the download may not reach; the message says why and what to change."""


class JobBusy(TfmirrorError):
    """Another holder runs the job now."""

    hint = "; pass --wait to run after it"

    def __init__(self, job: str, holder: Holder | None) -> None:
        self.job = job
        self.holder = holder
        who = holder.describe() if holder else "held by another process"
        super().__init__(f"{job} is running elsewhere ({who})")


class LeaseLost(TfmirrorError):
    """The job's lease is no longer this process's to count on: nothing may commit."""


class JobCrashed(TfmirrorError):
    """A job stopped on an error of its own; it is recorded as a failed run."""

    hint = " (recorded as a failed run; -v for the traceback)"

    def __init__(self, job: str, reason: str) -> None:
        super().__init__(f"{job} stopped on an unexpected error: {reason}")
        self.job = job


class SandboxUnavailable(TfmirrorError):
    """No sandbox engine here; the message says what to install."""


class Refused(TfmirrorError):
    """A path in a sandbox's folder that is not a plain file (or folder) of its own."""
