"""Where MinIO's bucket notifications are: a table in the app database or in its own one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from render_pipeline.resources.database import PostgresResource


class UploadEventsResource(ConfigurableResource):
    """MinIO's `notify_postgres` table (format=access) for the bucket the pipeline reads.

    ``table`` None switches events off (the listing cycle alone finds uploads); ``url`` None
    reads the table through the app database's connections."""

    table: str | None = Field(default=None, description="RENDER_EVENTS_TABLE: `name` or `schema.name`.")
    url: str | None = Field(default=None, description="RENDER_EVENTS_DATABASE_URL; the app database when unset.")
    bucket: str = Field(description="Events of other buckets are skipped.")

    _own_database: PostgresResource | None = PrivateAttr(default=None)

    @property
    def enabled(self) -> bool:
        return self.table is not None

    @contextmanager
    def connection(self, app_database: PostgresResource) -> Iterator[psycopg.Connection]:
        """An autocommit connection to the database holding the table."""
        if self.url is None:
            with app_database.connection() as conn:
                yield conn
            return
        if self._own_database is None:
            self._own_database = PostgresResource(url=self.url, pool_max_size=1)
        with self._own_database.connection() as conn:
            yield conn

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._own_database is not None:
            self._own_database.close()
            self._own_database = None
