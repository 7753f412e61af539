"""Dagster's PostgreSQL storage, holding a small connection pool in every process.

Outside the web server, dagster-postgres opens a new PostgreSQL connection for every read and
write (SQLAlchemy's NullPool): measured, one 32-upload render run opened ~1 400 connections
and spent seconds in connection set-up.  The web server avoids this through each storage's
public ``optimize_for_webserver`` (a pool of one connection plus overflow); this class does
the same in every process that loads the instance — run workers, the daemon, code servers.
`dagster.yaml` names it through Dagster's configurable-class mechanism (``storage: custom``).

With no ``postgres_url`` in its config and no DAGSTER_PG_URL, it uses the storage that
`render-pipeline up` would (the embedded server on embedded defaults), so Dagster's own
commands (`dagster dev`, `dagster definitions validate`, `dg check defs`) work from a fresh
clone with no environment set.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

NO_STATEMENT_TIMEOUT = 0  # runs and the daemon issue long queries (history retention)
POOL_RECYCLE_SECONDS = 3600
POOL_MAX_OVERFLOW = 8  # concurrent users of one process's storage: daemon threads, op threads


class PooledPostgresStorage(DagsterPostgresStorage):
    """``DagsterPostgresStorage`` whose run, event-log and schedule storages reuse connections."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data=None, token_provider=None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        for storage in (self.run_storage, self.event_log_storage, self.schedule_storage):
            storage.optimize_for_webserver(NO_STATEMENT_TIMEOUT, POOL_RECYCLE_SECONDS, POOL_MAX_OVERFLOW)

    @classmethod
    def from_config_value(cls, inst_data, config_value: Mapping[str, Any]) -> PooledPostgresStorage:
        configured = config_value.get("postgres_url") or config_value.get("postgres_db")
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value) if configured else _stack_storage_url(),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )


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
