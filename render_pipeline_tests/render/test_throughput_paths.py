"""The shortcuts that keep a render run's own work small: Dagster's pooled storage pings a
connection only when the server has closed it, and the colour styles of a run share the image
fitted to each preset as they share its decode."""

from __future__ import annotations

import time
import uuid

import numpy as np
import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text

from render_pipeline.dagster_storage import PooledPostgresStorage
from render_pipeline.render.scratch import RenderScratch
from render_pipeline.resources.embedded_postgres import dagster_storage_url


@pytest.fixture
def pooled_engine(pg_admin_url):
    """The event-log engine of a PooledPostgresStorage on a database of its own."""
    name = f"dagster_pool_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    storage = PooledPostgresStorage(dagster_storage_url(pg_admin_url, name))
    yield storage.event_log_storage._engine  # noqa: SLF001 (the engine the hooks are on)
    storage.event_log_storage.dispose()
    storage.run_storage.dispose()
    storage.schedule_storage.dispose()
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _backend(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _last_statement(admin_url: str, pid: int) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        return conn.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]


def test_a_live_pooled_connection_is_checked_out_without_a_ping(pooled_engine, pg_admin_url):
    pid = _backend(pooled_engine)
    with pooled_engine.connect() as conn:
        assert conn.connection.dbapi_connection.get_backend_pid() == pid  # the same pooled connection
        assert _last_statement(pg_admin_url, pid) == "SELECT pg_backend_pid()"  # no SELECT 1 at checkout


def test_a_connection_the_server_terminated_is_replaced_at_checkout(pooled_engine, pg_admin_url):
    pid = _backend(pooled_engine)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _last_statement_or_gone(pg_admin_url, pid):
        time.sleep(0.05)
    assert _backend(pooled_engine) != pid  # the statement ran on a fresh connection


def _last_statement_or_gone(admin_url: str, pid: int) -> bool:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0] > 0


def test_the_fit_to_a_preset_is_kept_once_for_the_run_and_survives_discard():
    scratch = RenderScratch()
    key = (uuid.uuid4(), "sha", False, "square-1024")
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert scratch.fitted(key) is None
    kept = scratch.keep_fitted(key, pixels)
    kept.discard()  # one style is done with it; the next colour style still reads it
    assert scratch.fitted(key) == kept and np.array_equal(kept.load(), pixels)
    own = scratch.spill(pixels)
    own.discard()
    assert not own.path.exists()
