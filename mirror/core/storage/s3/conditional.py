"""The S3 conditional PUT that the S3 leader lock and the S3 store's put_if both stand
on, and the error code of a boto3 error."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# What S3 (and MinIO, moto) answer when a PUT's condition does not hold.
PRECONDITION_FAILED = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


def error_code(exc: Exception) -> str:
    response: dict[str, Any] = getattr(exc, "response", {})
    return str(response.get("Error", {}).get("Code", ""))


def conditional_put(
    client: S3Client, bucket: str, key: str, body: bytes, if_match: str | None
) -> str | None:
    """PUT only if the object is at ETag `if_match` (None: only if absent); the new
    ETag, or None when the condition failed. Other errors are raised as they come."""
    from botocore.exceptions import ClientError

    try:
        if if_match is None:
            answer = client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
        else:
            answer = client.put_object(Bucket=bucket, Key=key, Body=body, IfMatch=if_match)
    except ClientError as exc:
        if error_code(exc) in PRECONDITION_FAILED:
            return None
        raise
    return str(answer["ETag"])
