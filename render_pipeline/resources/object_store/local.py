"""The object store as a local directory: the embedded default when no MINIO_ENDPOINT is set."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field

from render_pipeline.resources.object_store.base import (
    LIST_PAGE_SIZE,
    PIPELINE_PREFIXES,
    DeleteResult,
    InvalidKey,
    ListPage,
    ObjectInfo,
    ObjectStore,
    ObjectStoreError,
    check_key,
)
from render_pipeline.resources.object_store.local_listing import keys_after

_STAGING_DIR = ".staging"


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

    def list_page(self, prefix: str, *, cursor: str | None = None, page_size: int = LIST_PAGE_SIZE) -> ListPage:
        return next(self.list_pages(prefix, cursor=cursor, page_size=page_size))

    def list_pages(self, prefix: str, *, cursor: str | None = None, page_size: int = LIST_PAGE_SIZE,
                   pages: int = 1) -> Iterator[ListPage]:
        root = Path(self.root).resolve()
        keys, more = keys_after(root, prefix, cursor, page_size * pages, hidden=_STAGING_DIR)
        for start in range(0, max(len(keys), 1), page_size):
            page = keys[start : start + page_size]
            objects = [info for key in page if (info := self._info_or_none(key, root / key)) is not None]
            last = start + page_size >= len(keys)
            yield ListPage(objects=objects, next_cursor=page[-1] if page and (more or not last) else None)

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
