"""The object store: one small interface, a local-directory implementation and an S3 one.

Both keep the MinIO key layout (`uploads/{asset_id}/{filename}`, `renders/{render_id}/…`) and
list keys in the same order (UTF-8 byte order, as S3 does) with an opaque continuation cursor,
so code written against one runs unchanged against the other.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import tempfile
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import botocore.config
import botocore.exceptions
from dagster import ConfigurableResource
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

S3_DELETE_BATCH = 1000  # DeleteObjects accepts at most 1 000 keys per request
IO_THREADS = 8  # requests in flight for the batch helpers; botocore pools 10 connections
MAX_KEY_BYTES = 1024  # S3's limit on a key's UTF-8 length
_STAGING_DIR = ".staging"
PIPELINE_PREFIXES = ("uploads/", "renders/")  # the only prefixes the pipeline reads or writes


class ObjectStoreError(RuntimeError):
    """A store operation failed; the message is one readable line (never credentials).

    The message names the operation and S3's error, not the object: failures are grouped by
    message, so the key (which differs per render) is kept apart in ``key``.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key

    def with_key(self) -> str:
        """The message with the object it concerns, for an operator reading one failure."""
        return f"{self} (object {self.key!r})" if self.key else str(self)


class MissingBucket(ObjectStoreError):
    """The configured bucket does not exist."""


class InvalidKey(ObjectStoreError):
    """The key cannot be stored safely (traversal, absolute, control characters, too long)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    last_modified: datetime


@dataclass(frozen=True)
class ListPage:
    objects: list[ObjectInfo]
    next_cursor: str | None  # None when the listing is complete


@dataclass(frozen=True)
class DeleteResult:
    deleted: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise InvalidKey with the reason."""
    if not key:
        raise InvalidKey("empty object key")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKey(f"object key longer than {MAX_KEY_BYTES} bytes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise InvalidKey("object key contains control characters")
    if key.startswith("/") or "\\" in key:
        raise InvalidKey("object key must be a relative path with '/' separators")
    segments = key.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise InvalidKey("object key has an empty, '.' or '..' segment")
    return key


class ObjectStore(ConfigurableResource, ABC):
    """What the pipeline needs from MinIO/S3, and nothing more."""

    retry_seconds: float = Field(
        default=45.0,
        description="How long the render steps retry a failing read or write (MINIO_RETRY_SECONDS): an outage "
                    "or error burst shorter than this fails no render.",
    )

    @abstractmethod
    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> ObjectInfo:
        """Write (or overwrite) an object atomically."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Read a whole object; raises KeyError when it does not exist."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Size, ETag and mtime of an object, or None when it does not exist."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete one object; deleting a missing object is not an error."""

    @abstractmethod
    def delete_many(self, keys: Sequence[str]) -> DeleteResult:
        """Delete many objects; per-key failures are reported, not raised."""

    @abstractmethod
    def list_page(self, prefix: str, *, cursor: str | None = None, page_size: int = 1000) -> ListPage:
        """One page of objects under ``prefix`` in key order, resuming after ``cursor``."""

    @abstractmethod
    def check_usable(self) -> None:
        """Raise ObjectStoreError with a readable reason when the store cannot be used.

        Reads only (the bucket, a listing of each prefix the pipeline uses): a bucket policy
        that allows just `uploads/` and `renders/` must not stop the stack from starting."""

    @abstractmethod
    def describe(self) -> str:
        """Where the objects live, without secrets."""

    def iter_objects(self, prefix: str, *, page_size: int = 1000) -> Iterable[ObjectInfo]:
        cursor: str | None = None
        while True:
            page = self.list_page(prefix, cursor=cursor, page_size=page_size)
            yield from page.objects
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # Batch helpers: a run reads, writes and checks dozens of objects, and each request waits
    # on the network far longer than it uses the CPU, so they overlap on a few threads.

    def prefetch(self, keys: Sequence[str], *, ahead: int = 4) -> Iterator[tuple[str, Future[bytes]]]:
        """``(key, future of get(key))`` in order, with up to ``ahead`` gets in flight, so the
        caller's work on one object overlaps fetching the next; ``future.result()`` raises
        what ``get`` raised."""
        with ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="prefetch") as pool:
            remaining = iter(keys)
            pending = deque((key, pool.submit(self.get, key)) for key in itertools.islice(remaining, ahead))
            while pending:
                key, future = pending.popleft()
                following = next(remaining, None)
                if following is not None:
                    pending.append((following, pool.submit(self.get, following)))
                yield key, future

    def put_many(self, objects: Sequence[tuple[str, bytes, str]]) -> list[ObjectInfo]:
        """``put`` each ``(key, data, content_type)`` concurrently.  After the first failure no
        new write starts (a failing store is not flooded); it is raised once the writes in
        flight have finished."""
        with ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="put") as pool:
            futures = [pool.submit(self.put, key, data, content_type=kind) for key, data, kind in objects]
            wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                future.cancel()  # only those not started yet
        return [future.result() for future in futures]

    def head_many(self, keys: Sequence[str]) -> dict[str, ObjectInfo | None]:
        """``head`` of each key, concurrently."""
        with ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="head") as pool:
            return dict(zip(keys, pool.map(self.head, keys)))


class LocalObjectStore(ObjectStore):
    """Objects as files under ``root``; keys can never resolve outside it.

    ETags are derived from size and modification time, so an overwrite changes the ETag
    without hashing every file on each listing.
    """

    root: str = Field(description="Directory holding the objects.")

    def _path(self, key: str) -> Path:
        check_key(key)
        if key.split("/", 1)[0] == _STAGING_DIR:
            raise InvalidKey(f"object keys may not start with {_STAGING_DIR}/")
        root = Path(self.root).resolve()
        path = (root / key).resolve()
        if root not in path.parents:
            raise InvalidKey("object key resolves outside the store root")
        return path

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> ObjectInfo:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(self.root).resolve() / _STAGING_DIR
        staging.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=staging)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return self._info(key, path)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise KeyError(key) from None

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        if not path.is_file():
            return None
        return self._info(key, path)

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        self._prune_empty_dirs(path.parent)

    def delete_many(self, keys: Sequence[str]) -> DeleteResult:
        result = DeleteResult()
        for key in keys:
            try:
                self.delete(key)
                result.deleted.append(key)
            except (OSError, InvalidKey) as exc:
                result.errors[key] = str(exc)
        return result

    def list_page(self, prefix: str, *, cursor: str | None = None, page_size: int = 1000) -> ListPage:
        root = Path(self.root).resolve()
        keys = sorted(self._keys_under(root, prefix), key=lambda k: k.encode("utf-8", "surrogateescape"))
        if cursor is not None:
            after = cursor.encode("utf-8", "surrogateescape")
            keys = [k for k in keys if k.encode("utf-8", "surrogateescape") > after]
        page = keys[:page_size]
        objects = [info for key in page if (info := self._info_or_none(key, root / key)) is not None]
        next_cursor = page[-1] if len(keys) > page_size else None
        return ListPage(objects=objects, next_cursor=next_cursor)

    def check_usable(self) -> None:
        root = Path(self.root)
        try:
            for prefix in PIPELINE_PREFIXES:
                (root / prefix).mkdir(parents=True, exist_ok=True)
                if not os.access(root / prefix, os.R_OK | os.W_OK | os.X_OK):
                    raise ObjectStoreError(f"local store {root / prefix} is not readable and writable by this user")
        except OSError as exc:
            raise ObjectStoreError(f"local store {root} is not writable: {exc.strerror or exc}") from None

    def describe(self) -> str:
        return f"local directory {Path(self.root).resolve()}"

    def _keys_under(self, root: Path, prefix: str) -> Iterable[str]:
        # Walk only the directory part of the prefix; filter the rest by string prefix.
        base = root / prefix.rsplit("/", 1)[0] if "/" in prefix else root
        if not base.is_dir() or (root != base and root not in base.resolve().parents):
            return
        for dirpath, dirnames, filenames in os.walk(base):
            rel_dir = os.path.relpath(dirpath, root)
            if rel_dir == _STAGING_DIR or rel_dir.startswith(_STAGING_DIR + os.sep):
                dirnames.clear()
                continue
            for name in filenames:
                key = name if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{name}"
                if key.startswith(prefix):
                    yield key

    def _info(self, key: str, path: Path) -> ObjectInfo:
        stat = path.stat()
        etag = hashlib.md5(f"{stat.st_size}:{stat.st_mtime_ns}".encode(), usedforsecurity=False).hexdigest()
        return ObjectInfo(
            key=key,
            size=stat.st_size,
            etag=etag,
            last_modified=datetime.fromtimestamp(stat.st_mtime, tz=UTC),
        )

    def _info_or_none(self, key: str, path: Path) -> ObjectInfo | None:
        try:
            return self._info(key, path)
        except FileNotFoundError:  # deleted between the walk and the stat
            return None

    def _prune_empty_dirs(self, directory: Path) -> None:
        root = Path(self.root).resolve()
        while directory != root and root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent


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

    def list_page(self, prefix: str, *, cursor: str | None = None, page_size: int = 1000) -> ListPage:
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
