"""Adapters to the outside world (PostgreSQL, object stores) as Dagster resources."""

from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.object_store import (
    LocalObjectStore,
    ObjectInfo,
    ObjectStore,
    ObjectStoreError,
    S3ObjectStore,
)

__all__ = [
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectStore",
    "ObjectStoreError",
    "PostgresResource",
    "S3ObjectStore",
]
