"""The bundle's errors: a bundle refused, an interrupted import whose blobs are gone, a
key file that cannot be used. Each is a TfmirrorError (mirror.core.errors), so the
command prints it as one line."""

from __future__ import annotations

from mirror.core.errors import TfmirrorError


class BundleError(TfmirrorError):
    """The bundle is refused; the message says why."""

    label = "bundle refused"


class BlobsMissing(BundleError):
    """An interrupted import cannot be finished: blobs its manifests name are gone."""

    def __init__(self, bundle: str, missing: list[str]) -> None:
        self.bundle = bundle
        super().__init__(
            f"the import of bundle {bundle} was interrupted after its commit, and "
            f"{len(missing)} blobs its manifests name are missing here (first {missing[0]}): "
            f"nothing more of it was written; import bundle {bundle} again to bring them"
        )


class KeyFileError(TfmirrorError):
    """A key file cannot be used; the message says which and why."""

    exit_code = 2
    label = "error"
