"""`render-pipeline db upgrade | downgrade --to N | status | seed`."""

from __future__ import annotations

import argparse
from contextlib import contextmanager

from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.embedded_postgres import embedded_server_running, stop_embedded_server
from render_pipeline.settings import load_settings
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


def run(args: argparse.Namespace) -> int:
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
