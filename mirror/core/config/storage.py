"""[storage]: where the blobs, manifests and run records live (a local folder or an S3
bucket)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirror.core.backend_names import BACKEND_NAMES, LOCAL, S3
from mirror.core.config.forms import PATH, folder_problem
from mirror.core.config.keys import RETRIES, Check, Section, key, optional_url, plain, read_table

_BACKEND_CHOICES = "use " + " or ".join(f'"{name}"' for name in BACKEND_NAMES)


@dataclass(frozen=True)
class StorageConfig:
    backend: str = key(LOCAL, f'"{LOCAL}"', Check(lambda b: b in BACKEND_NAMES, _BACKEND_CHOICES))
    bucket: str = key("", '"tfmirror"')
    prefix: str = key("", '"mirror/"', form=plain(lambda prefix: prefix.strip("/")))
    endpoint_url: str = key(
        "",
        '"http://minio:9000"',
        optional_url('must be an http(s) URL, e.g. "http://127.0.0.1:9000"'),
    )
    region: str = key("", '"us-east-1"')
    # S3 requests tried again after a throttle, a 5xx or a lost connection (botocore's
    # standard mode backs off between them): a vanished endpoint fails after these.
    retries: int = key(4, "4", RETRIES)
    # the local backend's folder
    path: Path = key(  # noqa: RUF009 - key() returns a dataclasses.field
        Path("data"), '"data"', form=PATH
    )


def read(raw: Any, base: Path) -> StorageConfig:
    return read_table(StorageConfig, "storage", raw, base, validate)


def validate(s: Section, storage: StorageConfig) -> None:
    bucket = storage.bucket
    s.check("bucket", storage.backend != S3 or bool(bucket), bucket, 'backend "s3" needs a bucket')
    if storage.backend == LOCAL:
        problem = folder_problem(storage.path)
        written = str(s.raw["path"])
        s.check("path", problem is None, written, f"{problem}; choose a folder the mirror may own")
