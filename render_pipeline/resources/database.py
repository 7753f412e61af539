"""PostgreSQL on psycopg 3: a pooled connection source with a transaction helper."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from dagster import ConfigurableResource, InitResourceContext
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from pydantic import Field, PrivateAttr

from render_pipeline.settings import DatabaseSettings

# A restart of up to 30 s (stop, start, recovery) ends before the pool's reconnect attempt at
# ~31 s (1 + 2 + 4 + 8 + 16 s): a statement waits that long rather than failing its step.
CHECKOUT_WAIT_SECONDS = 45.0


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached; the message says which server and why, one line."""


class PostgresResource(ConfigurableResource):
    """The app database (`assets`, `renders`, `styles`, `size_presets`).

    Set ``url`` (DATABASE_URL) or ``host``/``port``/``dbname``/``user``/``password`` (DB_*);
    with neither, ``embedded_home`` names the embedded pgserver data directory.
    """

    url: str | None = Field(default=None, description="postgresql:// URL (DATABASE_URL).")
    host: str | None = None
    port: int = 5432
    dbname: str = "aso_render"
    user: str = "postgres"
    password: str | None = Field(default=None, description="DB_PASSWORD; resolved from the environment.")
    embedded_home: str | None = Field(default=None, description="Embedded server home when no database is set.")
    pool_max_size: int = 4
    connect_timeout_seconds: int = 10

    _pool: ConnectionPool | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, settings: DatabaseSettings, home: Path) -> PostgresResource:
        """Plain (non-Dagster) construction for the CLI and tests."""
        if settings.embedded:
            return cls(embedded_home=str(home))
        return cls(url=settings.conninfo)

    def conninfo(self) -> str:
        if self.url:
            return self.url
        if self.host:
            return make_conninfo(
                host=self.host, port=str(self.port), dbname=self.dbname, user=self.user, password=self.password
            )
        if self.embedded_home:
            from render_pipeline.resources.embedded_postgres import embedded_urls

            return embedded_urls(Path(self.embedded_home))[0]
        raise DatabaseUnavailable("no database configured: set DATABASE_URL or DB_HOST")

    def describe(self) -> str:
        """Where the database is, without credentials."""
        info = psycopg.conninfo.conninfo_to_dict(self.conninfo())
        host = info.get("host") or "localhost"
        return f"{info.get('user', '')}@{host}:{info.get('port', 5432)}/{info.get('dbname', '')}"

    def _get_pool(self) -> ConnectionPool:
        if self._pool is None:
            conninfo = self.conninfo()
            # One direct attempt first: it fails fast with libpq's own reason, where the pool
            # would retry in the background until its timeout and report only that.
            try:
                psycopg.connect(conninfo, connect_timeout=self.connect_timeout_seconds).close()
            except psycopg.Error as exc:
                raise DatabaseUnavailable(_unavailable_message(conninfo, exc)) from None
            pool = ConnectionPool(
                conninfo,
                min_size=1,
                max_size=self.pool_max_size,
                kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": self.connect_timeout_seconds},
                check=ConnectionPool.check_connection,
                open=False,
                name="render_pipeline",
            )
            try:
                pool.open(wait=True, timeout=self.connect_timeout_seconds)
            except Exception as exc:
                pool.close()
                raise DatabaseUnavailable(_unavailable_message(conninfo, exc)) from None
            self._pool = pool
        return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection from the pool; each statement commits on its own.  During a
        server restart the pool replaces its dead connections and this waits for one (up to
        ``CHECKOUT_WAIT_SECONDS``: the pool's reconnect attempts back off 1, 2, 4, 8, 16 s)."""
        with self._get_pool().connection(timeout=CHECKOUT_WAIT_SECONDS) as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """A connection inside one transaction: committed on exit, rolled back on error."""
        with self.connection() as conn, conn.transaction():
            yield conn

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        self.close()


def _unavailable_message(conninfo: str, exc: BaseException) -> str:
    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    where = f"{info.get('host') or 'localhost'}:{info.get('port', 5432)}/{info.get('dbname', '')}"
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    detail = " ".join(lines) if lines else type(exc).__name__
    return f"cannot connect to PostgreSQL at {where}: {detail}"
