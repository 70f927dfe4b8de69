"""Kaggle Models handles (where TF Hub moved): every spelling real code uses
(`https://www.kaggle.com/models/<owner>/<model>/<framework>/<variation>/<version>`,
`kaggle.com`, the long `.../frameworks/<f>/variations/<v>/versions/<n>` form, the
framework in any case, kagglehub's `owner/model/framework/variation/version`) parsed
into one model, kept once under
`models/<owner>/<model>/<framework>/<variation>/<version>` (the framework in lower case)
and answered under every spelling (tensorflow_hub still caches each string under its own
sha1, so prefetch fills the entry of exactly the string it was given)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

KAGGLE_HOSTS = ("www.kaggle.com", "kaggle.com")
DEFAULT_API = "https://www.kaggle.com/api/v1"
LONG_FORM = ("frameworks", "variations", "versions")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


@dataclass(frozen=True)
class KaggleModel:
    owner: str
    model: str
    framework: str  # as written; compared and stored in lower case
    variation: str
    version: str

    @property
    def path(self) -> str:
        """The one path the mirror keeps and serves this model under."""
        fields = (self.owner, self.model, self.framework.lower(), self.variation, self.version)
        return "models/" + "/".join(fields)

    def download_url(self, api: str) -> str:
        """Kaggle's REST download: a 302 to a signed storage URL of the tar.gz."""
        fields = (self.owner, self.model, self.framework, self.variation, self.version)
        return f"{api.rstrip('/')}/models/{'/'.join(fields)}/download"

    def instance_url(self, api: str) -> str:
        """Kaggle's REST metadata of the model instance (the kaggle CLI's
        model_instance_get): its licenseName among others. It has no version."""
        fields = (self.owner, self.model, self.framework, self.variation)
        return f"{api.rstrip('/')}/models/{'/'.join(fields)}/get"

    @property
    def kagglehub_handle(self) -> str:
        return f"{self.owner}/{self.model}/{self.framework}/{self.variation}/{self.version}"


def _from_segments(parts: list[str]) -> KaggleModel | None:
    if len(parts) == 8 and (parts[2], parts[4], parts[6]) == (
        "frameworks",
        "variations",
        "versions",
    ):
        parts = [parts[0], parts[1], parts[3], parts[5], parts[7]]
    if len(parts) != 5 or not all(_SEGMENT.match(p) and p != ".." for p in parts):
        return None
    if not parts[4].isdigit():
        return None
    return KaggleModel(*parts)


def parse_kaggle(handle: str) -> KaggleModel | None:
    """The model a Kaggle URL names (any spelling above), else None."""
    parts = urlsplit(handle)
    if parts.scheme not in ("http", "https") or (parts.hostname or "") not in KAGGLE_HOSTS:
        return None
    if parts.query or parts.fragment:
        return None
    return parse_kaggle_path(parts.path)


def parse_kaggle_path(path: str) -> KaggleModel | None:
    """The model a path names: `models/...` as on kaggle.com (short or long form)."""
    segments = [s for s in path.split("/") if s]
    if not segments or segments[0] != "models":
        return None
    return _from_segments(segments[1:])


def parse_kagglehub(handle: str) -> KaggleModel | None:
    """kagglehub's `owner/model/framework/variation/version` (a version is required:
    only a versioned handle loads from kagglehub's cache without asking Kaggle)."""
    if "://" in handle:
        return None
    return _from_segments([s for s in handle.split("/") if s])
