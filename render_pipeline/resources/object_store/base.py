"""The object store's interface: what the pipeline needs from MinIO/S3, its errors and data.

Every implementation keeps the MinIO key layout (`uploads/{asset_id}/{filename}`,
`renders/{render_id}/…`) and lists keys in the same order (UTF-8 byte order, as S3 does) with
an opaque continuation cursor, so code written against one runs unchanged against the other.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from dagster import ConfigurableResource
from pydantic import Field

LIST_PAGE_SIZE = 1000  # S3 returns at most 1 000 keys per listing page
IO_THREADS = 8  # requests in flight for the batch helpers; botocore pools 10 connections
MAX_KEY_BYTES = 1024  # S3's limit on a key's UTF-8 length
PIPELINE_PREFIXES = ("uploads/", "renders/")  # the only prefixes the pipeline reads or writes
T = TypeVar("T")


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
    def list_page(self, prefix: str, *, cursor: str | None = None, page_size: int = LIST_PAGE_SIZE) -> ListPage:
        """One page of objects under ``prefix`` in key order, resuming after ``cursor``."""

    @abstractmethod
    def check_usable(self) -> None:
        """Raise ObjectStoreError with a readable reason when the store cannot be used.

        Reads only (the bucket, a listing of each prefix the pipeline uses): a bucket policy
        that allows just `uploads/` and `renders/` must not stop the stack from starting."""

    @abstractmethod
    def describe(self) -> str:
        """Where the objects live, without secrets."""

    def list_pages(self, prefix: str, *, cursor: str | None = None, page_size: int = LIST_PAGE_SIZE,
                   pages: int = 1) -> Iterator[ListPage]:
        """Up to ``pages`` consecutive pages from ``cursor``, each read as it is consumed; a
        store whose every listing costs a full directory read overrides it to read once."""
        for _ in range(pages):
            page = self.list_page(prefix, cursor=cursor, page_size=page_size)
            yield page
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def iter_objects(self, prefix: str, *, page_size: int = LIST_PAGE_SIZE) -> Iterable[ObjectInfo]:
        cursor: str | None = None
        while True:
            page = self.list_page(prefix, cursor=cursor, page_size=page_size)
            yield from page.objects
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # Batch helpers: a run reads, writes and checks dozens of objects, and each request waits
    # on the network far longer than it uses the CPU, so they overlap on a few threads.

    def prefetch(
        self, keys: Sequence[str], *, ahead: int = 4, read: Callable[[str], T] | None = None
    ) -> Iterator[tuple[str, Future[T]]]:
        """``(key, future of read(key))`` in order (``read`` defaults to ``get``), with up to
        ``ahead`` reads in flight, so the caller's work on one object overlaps fetching the
        next and at most ``ahead`` + 1 objects are held; ``future.result()`` raises what
        ``read`` raised."""
        read = read or self.get
        with ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="prefetch") as pool:
            remaining = iter(keys)
            pending = deque((key, pool.submit(read, key)) for key in itertools.islice(remaining, ahead))
            while pending:
                key, future = pending.popleft()
                following = next(remaining, None)
                if following is not None:
                    pending.append((following, pool.submit(read, following)))
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
