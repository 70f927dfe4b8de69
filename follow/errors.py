"""Following's errors: a pull refused (what the centre served does not hold together),
each a TfmirrorError (mirror.core.errors), so the command prints it as one line."""

from __future__ import annotations

from mirror.core.errors import TfmirrorError


class FollowRefused(TfmirrorError):
    """The centre served something this site will not take; nothing was committed and
    the site serves what it had. The message names what and why."""

    label = "pull refused"
