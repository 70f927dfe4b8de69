"""The S3 store: blobs by multipart upload to a temporary key, published by a
server-side copy; documents with ETags for conditional writes; boto3 errors become
StoreError here (its leader lock is s3.lock)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from mirror.core.config import StorageConfig
from mirror.core.errors import BlobNotFound, StoreError
from mirror.core.storage.contract import BLOB_PREFIX, TMP_PREFIX, BlobWriter, blob_key
from mirror.core.storage.locks import LeaderLock
from mirror.core.storage.s3.conditional import conditional_put, error_code
from mirror.core.storage.s3.lock import S3Lock

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Parts must be >= 5 MiB (except the last); 16 MiB keeps memory per download small.
PART_SIZE = 16 * 1024 * 1024


class _S3BlobWriter:
    """Streams into a multipart upload at a temporary key; publish copies server-side."""

    def __init__(self, store: S3Store) -> None:
        self._store = store
        self._tmp_key = store.key(f"{TMP_PREFIX}/blob-{uuid.uuid4().hex}")
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = None
        self._done = False

    def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        if len(self._buffer) >= PART_SIZE:
            self._flush_part()

    def _flush_part(self) -> None:
        client, bucket = self._store.client, self._store.bucket
        with self._store.errors(self._tmp_key):
            if self._upload_id is None:
                created = client.create_multipart_upload(Bucket=bucket, Key=self._tmp_key)
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            answer = client.upload_part(
                Bucket=bucket,
                Key=self._tmp_key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=bytes(self._buffer),
            )
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        self._buffer.clear()

    def publish(self, sha256: str) -> None:
        client, bucket = self._store.client, self._store.bucket
        with self._store.errors(self._tmp_key):
            if self._upload_id is None:
                # Small blob: one PUT, straight to its final key (a PUT is atomic).
                client.put_object(
                    Bucket=bucket, Key=self._store.key(blob_key(sha256)), Body=bytes(self._buffer)
                )
                self._buffer.clear()
                self._done = True
                return
            if self._buffer:
                self._flush_part()
            client.complete_multipart_upload(
                Bucket=bucket,
                Key=self._tmp_key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},  # type: ignore[typeddict-item]
            )
            self._done = True
            # Managed copy: server-side, multipart for objects over 5 GB.
            client.copy(
                {"Bucket": bucket, "Key": self._tmp_key},
                bucket,
                self._store.key(blob_key(sha256)),
            )
            client.delete_object(Bucket=bucket, Key=self._tmp_key)

    def discard(self) -> None:
        self._buffer.clear()
        if self._upload_id is not None and not self._done:
            with self._store.errors(self._tmp_key):
                self._store.client.abort_multipart_upload(
                    Bucket=self._store.bucket, Key=self._tmp_key, UploadId=self._upload_id
                )
        self._done = True


@contextmanager
def _s3_errors(key: str) -> Iterator[None]:
    """Turns botocore errors into StoreError (or BlobNotFound) at the storage boundary."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchKey", "NotFound"):
            raise BlobNotFound(f"{key}: not found") from None
        raise StoreError(f"{key}: S3 error {code}: {exc}") from None
    except BotoCoreError as exc:
        raise StoreError(f"{key}: {exc}") from None


class S3Store:
    def __init__(self, config: StorageConfig, client: S3Client | None = None) -> None:
        self.bucket = config.bucket
        self.prefix = config.prefix
        self._endpoint = config.endpoint_url
        if client is None:
            import boto3
            from botocore.config import Config as BotoConfig

            # Retries configured once, here: adaptive backoff on throttling and 5xx.
            client = boto3.client(
                "s3",
                endpoint_url=config.endpoint_url or None,
                region_name=config.region or None,
                config=BotoConfig(
                    retries={"max_attempts": config.retries + 1, "mode": "standard"},
                    max_pool_connections=32,
                ),
            )
        self.client = client

    def describe(self) -> str:
        where = f" at {self._endpoint}" if self._endpoint else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    def key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def errors(self, key: str) -> AbstractContextManager[None]:
        return _s3_errors(key)

    def new_blob(self) -> BlobWriter:
        return _S3BlobWriter(self)

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            with self.errors(key):
                head = self.client.head_object(Bucket=self.bucket, Key=self.key(key))
        except BlobNotFound:
            return None
        return dict(head)

    def has_blob(self, sha256: str) -> bool:
        return self._head(blob_key(sha256)) is not None

    def blob_size(self, sha256: str) -> int | None:
        head = self._head(blob_key(sha256))
        return None if head is None else int(head["ContentLength"])

    def open_blob(self, sha256: str) -> BinaryIO:
        key = blob_key(sha256)
        try:
            with self.errors(key):
                answer = self.client.get_object(Bucket=self.bucket, Key=self.key(key))
        except BlobNotFound:
            raise BlobNotFound(f"blob {sha256} is not in {self.describe()}") from None
        return answer["Body"]  # type: ignore[return-value]

    def open_range(self, sha256: str, start: int, length: int) -> BinaryIO:
        key = blob_key(sha256)
        with self.errors(key):
            answer = self.client.get_object(
                Bucket=self.bucket, Key=self.key(key), Range=f"bytes={start}-{start + length - 1}"
            )
        return answer["Body"]  # type: ignore[return-value]

    def local_path(self, sha256: str) -> Path | None:
        return None

    def leader_lock(self, ttl: float) -> LeaderLock:
        return S3Lock(self.client, self.bucket, self.key, ttl)

    def presigned_url(self, sha256: str, seconds: int = 3600) -> str | None:
        """A time-limited GET URL for a blob, for clients that can reach S3 directly."""
        key = blob_key(sha256)
        with self.errors(key):
            return str(
                self.client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self.bucket, "Key": self.key(key)},
                    ExpiresIn=seconds,
                )
            )

    def delete_blob(self, sha256: str) -> None:
        self.delete(blob_key(sha256))

    def blob_mtime(self, sha256: str) -> float | None:
        head = self._head(blob_key(sha256))
        return None if head is None else float(head["LastModified"].timestamp())

    def move_blob(self, sha256: str, key: str) -> None:
        source = blob_key(sha256)
        with self.errors(source):
            self.client.copy(
                {"Bucket": self.bucket, "Key": self.key(source)}, self.bucket, self.key(key)
            )
            self.client.delete_object(Bucket=self.bucket, Key=self.key(source))

    def iter_blobs(self) -> Iterator[str]:
        for key in self.list(BLOB_PREFIX):
            yield key.rsplit("/", 1)[-1]

    def iter_temporaries(self) -> Iterator[tuple[str, float]]:
        tmp = self.key(f"{TMP_PREFIX}/")
        with self.errors(tmp):
            uploads = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=tmp
            )
            for page in uploads:
                for upload in page.get("Uploads", []):
                    ident = f"upload:{upload['Key']}:{upload['UploadId']}"
                    yield ident, upload["Initiated"].timestamp()
            objects = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=tmp
            )
            for listing in objects:
                for obj in listing.get("Contents", []):
                    yield f"object:{obj['Key']}", obj["LastModified"].timestamp()

    def drop_temporary(self, ident: str) -> None:
        kind, _, rest = ident.partition(":")
        with self.errors(rest):
            if kind == "upload":
                key, _, upload_id = rest.rpartition(":")
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            else:
                self.client.delete_object(Bucket=self.bucket, Key=rest)

    def get(self, key: str) -> bytes | None:
        try:
            with self.errors(key):
                answer = self.client.get_object(Bucket=self.bucket, Key=self.key(key))
                data: bytes = answer["Body"].read()
        except BlobNotFound:
            return None
        return data

    def put(self, key: str, data: bytes) -> None:
        with self.errors(key):
            self.client.put_object(Bucket=self.bucket, Key=self.key(key), Body=data)

    def get_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            with self.errors(key):
                answer = self.client.get_object(Bucket=self.bucket, Key=self.key(key))
                return answer["Body"].read(), str(answer["ETag"])
        except BlobNotFound:
            return None

    def put_if(self, key: str, data: bytes, version: str | None) -> bool:
        try:
            with self.errors(key):
                return (
                    conditional_put(self.client, self.bucket, self.key(key), data, version)
                    is not None
                )
        except BlobNotFound:  # If-Match on a document deleted meanwhile
            return False

    def touch_blob(self, sha256: str) -> bool:
        key = self.key(blob_key(sha256))
        try:
            with self.errors(key):
                # A copy onto itself with new metadata is S3's way to re-stamp LastModified.
                self.client.copy_object(
                    Bucket=self.bucket,
                    Key=key,
                    CopySource={"Bucket": self.bucket, "Key": key},
                    MetadataDirective="REPLACE",
                )
        except BlobNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        with self.errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self.key(key))

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        strip = len(self.key("")) if self.prefix else 0
        with self.errors(prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.key(prefix.rstrip("/") + "/")
            )
            for page in pages:
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(keys)

    def stamps(self, prefix: str) -> dict[str, str]:
        stamps: dict[str, str] = {}
        strip = len(self.key("")) if self.prefix else 0
        with self.errors(prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.key(prefix.rstrip("/") + "/")
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    stamps[obj["Key"][strip:]] = str(obj["ETag"])
        return stamps
