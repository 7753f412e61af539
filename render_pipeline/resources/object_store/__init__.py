"""The object store: one small interface (`base`), a local-directory implementation (`local`)
and an S3/MinIO one (`s3`); every public name is importable from here."""

from render_pipeline.resources.object_store.base import (
    IO_THREADS,
    LIST_PAGE_SIZE,
    MAX_KEY_BYTES,
    PIPELINE_PREFIXES,
    DeleteResult,
    InvalidKey,
    ListPage,
    MissingBucket,
    ObjectInfo,
    ObjectStore,
    ObjectStoreError,
    check_key,
)
from render_pipeline.resources.object_store.local import LocalObjectStore
from render_pipeline.resources.object_store.s3 import S3_DELETE_BATCH, S3Client, S3ObjectStore, s3_error_code

__all__ = [
    "IO_THREADS",
    "LIST_PAGE_SIZE",
    "MAX_KEY_BYTES",
    "PIPELINE_PREFIXES",
    "S3_DELETE_BATCH",
    "DeleteResult",
    "InvalidKey",
    "ListPage",
    "LocalObjectStore",
    "MissingBucket",
    "ObjectInfo",
    "ObjectStore",
    "ObjectStoreError",
    "S3Client",
    "S3ObjectStore",
    "check_key",
    "s3_error_code",
]
