"""Following's errors: a pull refused (what the centre served does not hold together),
each a TfmirrorError (mirror.core.errors), so the command prints it as one line."""

from __future__ import annotations

from mirror.core.errors import TfmirrorError


class FollowRefused(TfmirrorError):
    """The centre served something this site will not take; nothing was committed and
    the site serves what it had. The message names what and why."""

    label = "pull refused"


class BlobsMissing(FollowRefused):
    """A pull that stopped midway: the centre named blobs it did not deliver (it went
    down, or served wrong bytes). Those it did deliver stay stored: the next pull takes
    them as held and asks only for the rest."""

    def __init__(self, message: str, centre_seq: int, blobs: int, size: int) -> None:
        super().__init__(message)
        self.centre_seq = centre_seq
        self.blobs = blobs
        self.size = size
