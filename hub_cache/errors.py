"""The hub side's errors: a model refused (an archive, a .tflite, a TF.js folder, a Keras
file; the message is the reason), bytes that are not a SavedModel, a link where a folder
of ours belongs, a prefetch that failed. Each is a TfmirrorError (mirror.core.errors),
so the command prints it as one line."""

from __future__ import annotations

from mirror.core.errors import DownloadError, TfmirrorError


class ArchiveRejected(TfmirrorError):
    """Not a model archive the mirror will publish; the message is the reason."""


class NotASavedModel(TfmirrorError, ValueError):
    """The bytes are not a SavedModel this reader understands; the message says why.
    (A ValueError too, as it was before it joined tfmirror's errors.)"""


class NotFollowed(TfmirrorError):
    """An entry where a folder or file of ours belongs is a link or something else."""

    label = "refused"


class PrefetchError(TfmirrorError):
    """A model could not be put into the cache; the message names its handle and says why."""


class LicenseUnread(DownloadError):
    """Kaggle's metadata of a model, where its licence is, could not be read (the
    message says why)."""


class SignatureRefused(TfmirrorError):
    """A model whose entry requires a signature carries none that verifies; the message
    says which file, signer or check failed."""
