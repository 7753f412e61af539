"""The stack's two databases as an operator command sees them, and whether the stack is running.

A command that rewrites the databases must not run under a live stack: it checks the `up`
process recorded in `$RENDER_PIPELINE_HOME/stack.json` (when `up` writes one) and the Dagster
daemon's heartbeats, which every daemon writes to Dagster's storage every few seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from render_pipeline.operations.postgres_tools import Database, database_exists
from render_pipeline.settings import DEFAULT_DAGSTER_DB_NAME, DEFAULT_DB_NAME, Settings
from render_pipeline.stack import STACK_FILE, running_stack

HEARTBEAT_WINDOW_SECONDS = 60


class StackRunning(RuntimeError):
    """The stack is up; the message says how that was seen and what to do."""


@dataclass(frozen=True)
class StackDatabases:
    app: Database
    dagster: Database
    embedded: bool


@contextmanager
def stack_databases(settings: Settings, *, create_embedded: bool) -> Iterator[StackDatabases]:
    """The app and Dagster databases.  The embedded server is started if it is stopped (and a
    missing data directory created only when ``create_embedded``), then stopped again on exit,
    so the command leaves it as it found it."""
    if not settings.database.embedded:
        app = Database.from_conninfo(settings.database.conninfo or "")
        dagster = (Database.from_dagster_url(settings.dagster_database_url) if settings.dagster_database_url
                   else app.on(DEFAULT_DAGSTER_DB_NAME))
        yield StackDatabases(app, dagster, embedded=False)
        return

    from render_pipeline.resources.embedded_postgres import (
        embedded_server,
        embedded_server_running,
        stop_embedded_server,
    )

    pgdata = settings.home / "pgdata"
    if not create_embedded and not pgdata.is_dir():
        raise FileNotFoundError(f"no embedded database under {pgdata} (is RENDER_PIPELINE_HOME right?)")
    was_running = embedded_server_running(settings.home)
    server = embedded_server(settings.home)
    try:
        yield StackDatabases(Database.from_conninfo(server.get_uri(DEFAULT_DB_NAME)),
                             Database.from_conninfo(server.get_uri(DEFAULT_DAGSTER_DB_NAME)), embedded=True)
    finally:
        if not was_running:
            stop_embedded_server(settings.home)


def up_process(home: Path) -> int | None:
    """The pid of a live `render-pipeline up` recorded in stack.json, else None."""
    record = running_stack(home)
    return record.pid if record is not None else None


def heartbeat_ages(dagster: Database) -> dict[str, float]:
    """Seconds since each Dagster daemon's last heartbeat in this storage ({} when none)."""
    if not database_exists(dagster.on("postgres"), dagster.name):
        return {}
    try:
        with dagster.connect(autocommit=True) as conn:
            rows = conn.execute("SELECT daemon_type, body FROM daemon_heartbeats").fetchall()
    except psycopg.errors.UndefinedTable:
        return {}  # Dagster's tables were never created: no daemon ever ran here
    now = time.time()
    return {str(daemon): now - float(json.loads(body)["timestamp"]) for daemon, body in rows}


def refuse_if_running(settings: Settings, dagster: Database | None = None) -> None:
    """Raise StackRunning when `up` is alive or a daemon heartbeated within the window."""
    pid = up_process(settings.home)
    if pid is not None:
        raise StackRunning(f"the stack is running (`render-pipeline up`, pid {pid}, per "
                           f"{settings.home / STACK_FILE}): stop it first")
    if dagster is None:
        return
    recent = {name: age for name, age in heartbeat_ages(dagster).items() if age < HEARTBEAT_WINDOW_SECONDS}
    if recent:
        name, age = min(recent.items(), key=lambda item: item[1])
        raise StackRunning(f"the stack is running: Dagster daemon {name} heartbeated {age:.0f} s ago in "
                           f"{dagster.describe()}; stop `render-pipeline up` (or the daemon) and retry once "
                           f"{HEARTBEAT_WINDOW_SECONDS} s have passed")

