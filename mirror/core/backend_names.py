"""The storage backends' names, as `[storage] backend` spells them: the storage package
keys its table of backends by them and the config accepts no other. They stand apart
from both because the storage package reads its own config section, so the config
cannot import the storage package."""

from __future__ import annotations

LOCAL = "local"
S3 = "s3"
BACKEND_NAMES = (LOCAL, S3)
