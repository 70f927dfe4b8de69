"""The composition root's own errors (its commands'); the sides keep theirs."""

from __future__ import annotations

from mirror.core.errors import TfmirrorError


class SbomInvalid(TfmirrorError):
    """The SBOM made does not validate against CycloneDX's schema: a defect of ours,
    never written out."""

    label = "sbom"
