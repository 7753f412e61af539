"""`render-pipeline db upgrade | downgrade --to N | status | seed | url [--dagster] | stop`."""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager

from psycopg.conninfo import make_conninfo

from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.embedded_postgres import embedded_server_running, stop_embedded_server
from render_pipeline.settings import DEFAULT_DAGSTER_DB_NAME, DEFAULT_DB_NAME, Settings, load_settings
from render_pipeline.stack import has_password, psql_uri, running_stack
from render_pipeline.store import migrations


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("db", help="apply, roll back or show schema migrations")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="apply pending migrations, then load the seeds")
    upgrade.add_argument("--to", type=int, default=None, help="stop at this version")
    upgrade.add_argument("--no-seed", action="store_true", help="do not load the style/preset seeds")
    downgrade = actions.add_parser("downgrade", help="roll back migrations above --to")
    downgrade.add_argument("--to", type=int, required=True, help="version to return to (0 = empty)")
    actions.add_parser("status", help="list migrations and whether each is applied")
    actions.add_parser("seed", help="load the style and size-preset catalogues")
    url = actions.add_parser("url", help="print the app database's URI for psql (no password)")
    url.add_argument("--dagster", action="store_true", help="Dagster's storage instead of the app database")
    actions.add_parser("stop", help="stop the embedded server (Dagster's own commands leave it running)")
    parser.set_defaults(func=run)


@contextmanager
def _connection():
    """A connection to the configured database; an embedded server this command had to start
    is stopped again afterwards (one `render-pipeline up` keeps its own running)."""
    settings = load_settings()
    database = PostgresResource.from_settings(settings.database, settings.home)
    started_here = settings.database.embedded and not embedded_server_running(settings.home)
    try:
        with database.connection() as conn:
            yield conn
    finally:
        database.close()
        if started_here:
            stop_embedded_server(settings.home)


def database_uri(settings: Settings, dagster: bool = False) -> str:
    """The running stack's URI (as `up` recorded it), else the one these settings select."""
    record = running_stack(settings.home)
    if record is not None:
        return record.dagster_storage_uri if dagster else record.database_uri
    if dagster and settings.dagster_database_url:
        return psql_uri(settings.dagster_database_url)
    name = DEFAULT_DAGSTER_DB_NAME if dagster else None
    if settings.database.embedded:
        return psql_uri(make_conninfo(host=str(settings.home / "pgdata"), user="postgres", dbname=name or DEFAULT_DB_NAME))
    conninfo = settings.database.conninfo or ""
    return psql_uri(make_conninfo(conninfo, dbname=name) if name else conninfo)


def _print_url(dagster: bool) -> int:
    settings = load_settings()
    print(database_uri(settings, dagster))
    if settings.database.embedded and not embedded_server_running(settings.home):
        print("note: the embedded server is not running (`render-pipeline up` starts it)", file=sys.stderr)
    url = (settings.dagster_database_url if dagster else None) or settings.database.conninfo or ""
    if url and has_password(url):
        print("note: the password is left out; psql reads it from PGPASSWORD or ~/.pgpass", file=sys.stderr)
    return 0


def _stop() -> int:
    settings = load_settings()
    stack = running_stack(settings.home)
    if stack is not None:
        print(f"error: `render-pipeline up` (pid {stack.pid}) is using it: stop that instead", file=sys.stderr)
        return 1
    if not settings.database.embedded or not embedded_server_running(settings.home):
        print("no embedded server is running under " + str(settings.home))
        return 0
    stop_embedded_server(settings.home)
    print(f"embedded PostgreSQL under {settings.home / 'pgdata'} stopped")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "url":
        return _print_url(args.dagster)
    if args.action == "stop":
        return _stop()
    with _connection() as conn:
        if args.action == "upgrade":
            applied = migrations.upgrade(conn, to=args.to)
            for migration in applied:
                print(f"applied {migration.version:03d}_{migration.name}")
            if not applied:
                print(f"schema is up to date at version {migrations.current_version(conn):03d}")
            if not args.no_seed and migrations.current_version(conn) >= migrations.latest_version():
                for name in migrations.seed(conn):
                    print(f"seeded {name}")
        elif args.action == "downgrade":
            rolled_back = migrations.downgrade(conn, to=args.to)
            for migration in rolled_back:
                print(f"rolled back {migration.version:03d}_{migration.name}")
            if not rolled_back:
                print(f"nothing to roll back: schema is at version {migrations.current_version(conn):03d}")
        elif args.action == "seed":
            for name in migrations.seed(conn):
                print(f"seeded {name}")
        else:
            rows = migrations.status(conn)
            for row in rows:
                state = f"applied {row.applied_at}" if row.applied_at else "pending"
                if row.checksum_matches is False:
                    state += " (file changed since it was applied)"
                print(f"{row.version:03d}_{row.name:<32} {state}")
            print(f"current version: {migrations.current_version(conn):03d} of {migrations.latest_version():03d}")
    return 0
