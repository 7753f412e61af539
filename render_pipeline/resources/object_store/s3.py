"""The object store in an S3/MinIO bucket through boto3 (dagster-aws's S3Resource for the client)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import botocore.config
import botocore.exceptions
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

from render_pipeline.resources.object_store.base import (
    LIST_PAGE_SIZE,
    PIPELINE_PREFIXES,
    DeleteResult,
    ListPage,
    MissingBucket,
    ObjectInfo,
    ObjectStore,
    ObjectStoreError,
    check_key,
)

S3_DELETE_BATCH = 1000  # DeleteObjects accepts at most 1 000 keys per request


class S3Client(S3Resource):
    """dagster-aws's S3Resource with the connect/read timeouts MinIO deployments need."""

    connect_timeout: float = Field(default=5.0, description="Seconds to wait for a TCP connection.")
    read_timeout: float = Field(default=30.0, description="Seconds to wait for a response.")

    def get_client(self) -> Any:
        import boto3

        session = boto3.session.Session(profile_name=self.profile_name)
        return session.client(
            "s3",
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            use_ssl=self.use_ssl,
            verify=self.verify,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
            config=botocore.config.Config(
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
                # botocore's `max_attempts` counts retries *after* the first call; the setting
                # (MINIO_MAX_ATTEMPTS, S3Resource.max_attempts) counts the first call too.
                retries={"total_max_attempts": self.max_attempts, "mode": "standard"},
                s3={"addressing_style": "path"},  # MinIO serves buckets as paths
            ),
        )


class S3ObjectStore(ObjectStore):
    """Objects in one S3/MinIO bucket through boto3."""

    s3: S3Client
    bucket: str

    _client: Any = PrivateAttr(default=None)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.s3.get_client()
        return self._client

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> ObjectInfo:
        check_key(key)
        response = self._call("put", key, self.client.put_object, Bucket=self.bucket, Key=key, Body=data,
                              ContentType=content_type)
        return ObjectInfo(key=key, size=len(data), etag=response["ETag"].strip('"'), last_modified=datetime.now(UTC))

    def get(self, key: str) -> bytes:
        check_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            return response["Body"].read()
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) in ("NoSuchKey", "404"):
                raise KeyError(key) from None
            raise ObjectStoreError(_describe_error("get", exc), key=key) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise ObjectStoreError(_describe_error("get", exc), key=key) from exc

    def head(self, key: str) -> ObjectInfo | None:
        check_key(key)
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise ObjectStoreError(_describe_error("head", exc), key=key) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise ObjectStoreError(_describe_error("head", exc), key=key) from exc
        return ObjectInfo(
            key=key,
            size=response["ContentLength"],
            etag=response["ETag"].strip('"'),
            last_modified=response["LastModified"],
        )

    def delete(self, key: str) -> None:
        check_key(key)
        self._call("delete", key, self.client.delete_object, Bucket=self.bucket, Key=key)

    def delete_many(self, keys: Sequence[str]) -> DeleteResult:
        result = DeleteResult()
        for start in range(0, len(keys), S3_DELETE_BATCH):
            batch = list(keys[start : start + S3_DELETE_BATCH])
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": False}
                )
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                reason = _describe_error("delete", exc)
                result.errors.update({k: reason for k in batch})
                continue
            result.deleted.extend(item["Key"] for item in response.get("Deleted", []))
            for error in response.get("Errors", []):
                result.errors[error["Key"]] = f"{error.get('Code')}: {error.get('Message')}"
        return result

    def list_page(self, prefix: str, *, cursor: str | None = None, page_size: int = LIST_PAGE_SIZE) -> ListPage:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": page_size}
        if cursor is not None:
            kwargs["StartAfter"] = cursor
        response = self._call("list", prefix or "/", self.client.list_objects_v2, **kwargs)
        objects = [
            ObjectInfo(
                key=item["Key"], size=item["Size"], etag=item["ETag"].strip('"'), last_modified=item["LastModified"]
            )
            for item in response.get("Contents", [])
        ]
        truncated = response.get("IsTruncated", False) and objects
        return ListPage(objects=objects, next_cursor=objects[-1].key if truncated else None)

    def check_usable(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
                raise MissingBucket(
                    f"bucket {self.bucket!r} does not exist at {self.s3.endpoint_url}: create it "
                    f"(`render-pipeline up --create-bucket`, or `mc mb`) or set MINIO_BUCKET"
                ) from None
            raise ObjectStoreError(_describe_error(f"head bucket {self.bucket!r}", exc)) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise ObjectStoreError(_describe_error(f"connect to {self.s3.endpoint_url}", exc)) from None
        for prefix in PIPELINE_PREFIXES:
            self.list_page(prefix, page_size=1)

    def create_bucket(self) -> None:
        """Create the configured bucket (an existing one of ours is fine)."""
        try:
            self.client.create_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) != "BucketAlreadyOwnedByYou":
                raise ObjectStoreError(_describe_error(f"create bucket {self.bucket!r}", exc)) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise ObjectStoreError(_describe_error(f"connect to {self.s3.endpoint_url}", exc)) from None

    def describe(self) -> str:
        return f"s3 {self.s3.endpoint_url or 'aws'} bucket={self.bucket}"

    def _call(self, action: str, key: str, method: Any, **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise ObjectStoreError(_describe_error(action, exc), key=key) from exc


def _error_code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def s3_error_code(exc: botocore.exceptions.ClientError) -> str:
    """S3's error code, named even when S3 sent none: a HEAD response has no body, so botocore
    reports only the HTTP status ("503"), which becomes "ServiceUnavailable (HTTP 503)" — the
    same words a GET or PUT refused for the same reason carries."""
    code = _error_code(exc) or "error"
    if code.isdigit():
        try:
            return f"{HTTPStatus(int(code)).phrase.title().replace(' ', '').replace('-', '')} (HTTP {code})"
        except ValueError:
            return f"HTTP {code}"
    return code


def _transport_error(exc: botocore.exceptions.BotoCoreError) -> str:
    """A failure below HTTP (timeout, refused connection) as words that stay the same for
    every request: the exception's text would name the endpoint URL and the object key."""
    if isinstance(exc, (botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError)):
        return f"timed out ({type(exc).__name__})"
    return type(exc).__name__


def _describe_error(action: str, exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        code = s3_error_code(exc)
        if _error_code(exc) in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
            return f"S3 {action} refused ({code}): check MINIO_ACCESS_KEY / MINIO_SECRET_KEY"
        if code == "NoSuchBucket":
            return f"S3 {action} failed: the bucket does not exist (check MINIO_BUCKET)"
        return f"S3 {action} failed: {code}"
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return f"S3 {action} failed: {_transport_error(exc)}"
    return f"S3 {action} failed: {type(exc).__name__}"
