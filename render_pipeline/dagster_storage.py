"""Dagster's PostgreSQL storage, holding a small connection pool in every process.

Outside the web server, dagster-postgres opens a new PostgreSQL connection for every read and
write (SQLAlchemy's NullPool): measured, one 32-upload render run opened ~1 400 connections
and spent seconds in connection set-up.  The web server avoids this through each storage's
public ``optimize_for_webserver`` (a pool of one connection plus overflow); this class does
the same in every process that loads the instance — run workers, the daemon, code servers.
`dagster.yaml` names it through Dagster's configurable-class mechanism (``storage: custom``).

It also rides out a PostgreSQL restart: dagster-postgres retries a failed connect five times
within about six seconds, then raises "too many retries for DB connection" — inside a run
worker that fails the step writing an event, which no op retry covers.  Here a pooled
connection is checked before use (a dead one is replaced), and a new connection keeps being
attempted for up to ``OUTAGE_TOLERANCE_SECONDS`` since the first failure, so a restart of up
to that long only pauses the process.

With no ``postgres_url`` in its config and no DAGSTER_PG_URL, it uses the storage that
`render-pipeline up` would (the embedded server on embedded defaults), so Dagster's own
commands (`dagster dev`, `dagster definitions validate`, `dg check defs`) work from a fresh
clone with no environment set.
"""

from __future__ import annotations

import os
import select
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

NO_STATEMENT_TIMEOUT = 0  # runs and the daemon issue long queries (history retention)
POOL_RECYCLE_SECONDS = 3600
POOL_MAX_OVERFLOW = 8  # concurrent users of one process's storage: daemon threads, op threads
OUTAGE_TOLERANCE_SECONDS = 45.0  # a restart (stop, start, recovery) of up to 30 s, with room
MAX_CONNECT_DELAY_SECONDS = 2.0


class PooledPostgresStorage(DagsterPostgresStorage):
    """``DagsterPostgresStorage`` whose run, event-log and schedule storages reuse connections."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data=None, token_provider=None):
        # DagsterPostgresStorage.__init__, with the event-log storage below in place of its own
        # (built there, it would be one more engine per process that nothing uses).
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        self._run_storage = PostgresRunStorage(postgres_url, should_autocreate_tables, token_provider=token_provider)
        self._event_log_storage = KnownTablesEventLogStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider)
        self._schedule_storage = PostgresScheduleStorage(
            postgres_url, should_autocreate_tables, token_provider=token_provider)
        super(DagsterPostgresStorage, self).__init__()
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            storage.optimize_for_webserver(NO_STATEMENT_TIMEOUT, POOL_RECYCLE_SECONDS, POOL_MAX_OVERFLOW)
            # The engine dagster-postgres just made (it has no public accessor).
            engine = storage._engine  # noqa: SLF001
            event.listen(engine, "do_connect", OutageTolerantConnect())
            event.listen(engine, "checkout", _replace_if_dead)

    @classmethod
    def from_config_value(cls, inst_data, config_value: Mapping[str, Any]) -> PooledPostgresStorage:
        configured = config_value.get("postgres_url") or config_value.get("postgres_db")
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value) if configured else _stack_storage_url(),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )


class KnownTablesEventLogStorage(PostgresEventLogStorage):
    """``PostgresEventLogStorage`` that looks a table up in the catalogue once, not on every
    write.  Each materialization with tags asks whether the asset-event tags table exists, on
    a second connection while its own transaction holds the first: with a pool of one, that
    was a new PostgreSQL connection plus a catalogue query per materialization.  Tables are
    only ever added (by a migration), so a table once found is remembered."""

    def __init__(self, *args, **kwargs) -> None:
        self._tables_found: set[str] = set()
        super().__init__(*args, **kwargs)

    def has_table(self, table_name: str) -> bool:
        if table_name in self._tables_found:
            return True
        found = super().has_table(table_name)
        if found:
            self._tables_found.add(table_name)
        return found


class OutageTolerantConnect:
    """SQLAlchemy ``do_connect`` hook: while the server refuses connections, try again (0.25 s,
    doubling to ``MAX_CONNECT_DELAY_SECONDS``) until ``OUTAGE_TOLERANCE_SECONDS`` have passed
    since the first refusal; after that each attempt fails at once until one succeeds, so
    callers that retry on their own (dagster-postgres does) do not multiply the wait."""

    def __init__(self, tolerance: float = OUTAGE_TOLERANCE_SECONDS) -> None:
        self.tolerance = tolerance
        self._failing_since: float | None = None
        self._lock = threading.Lock()

    def __call__(self, dialect, _connection_record, cargs, cparams):
        delay = 0.25
        while True:
            try:
                connection = dialect.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError:
                with self._lock:
                    now = time.monotonic()
                    self._failing_since = self._failing_since or now
                    remaining = self._failing_since + self.tolerance - now
                if remaining <= 0:
                    raise
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, MAX_CONNECT_DELAY_SECONDS)
            else:
                with self._lock:
                    self._failing_since = None
                return connection


def _replace_if_dead(dbapi_connection, _connection_record, _connection_proxy) -> None:
    """Pool ``checkout`` hook (SQLAlchemy's pessimistic disconnect handling): a connection the
    server closed (it restarted) is replaced before use instead of failing the statement.

    A server that stops or terminates a backend sends it a last message and closes the
    socket, so a dead connection has input waiting while an idle live one has none: only
    then is the connection pinged.  Checkouts come several per Dagster event, and a ping on
    each was a third of a run's statements."""
    if not dbapi_connection.closed and not _input_waiting(dbapi_connection):
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT 1")
    except Exception as exc:
        raise DisconnectionError() from exc
    finally:
        try:
            cursor.close()
        except Exception:
            pass


def _input_waiting(dbapi_connection) -> bool:
    """Whether the server has sent anything (or closed) since the connection was last used."""
    try:
        poller = select.poll()
        poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except Exception:  # closed or unusable: the ping decides
        return True


def _stack_storage_url() -> str:
    """DAGSTER_PG_URL, else the databases `up` prepares for the current settings (exported so
    this process's children — code servers, run workers — attach without preparing again)."""
    url = os.environ.get("DAGSTER_PG_URL", "").strip()
    if url:
        return url
    from render_pipeline.settings import load_settings
    from render_pipeline.stack import prepare_databases, psql_uri

    settings = load_settings()
    url = prepare_databases(settings, announce=lambda _line: None).dagster
    os.environ["DAGSTER_PG_URL"] = url
    print(f"render_pipeline: DAGSTER_PG_URL is not set; Dagster's storage is {psql_uri(url)} "
          f"(what `render-pipeline up` uses for these settings)", file=sys.stderr)
    return url
