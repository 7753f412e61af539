"""`render-pipeline up`: the whole system on one machine.

Starts the embedded PostgreSQL when no database is configured, applies migrations and seeds,
prepares the object store and DAGSTER_HOME, then runs `dagster dev` (web UI + daemon, so
sensors and schedules are live) until interrupted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.embedded_postgres import (
    dagster_storage_url,
    embedded_urls,
    ensure_database,
    stop_embedded_server,
)
from render_pipeline.resources.factory import object_store_from_settings
from render_pipeline.settings import DEFAULT_DAGSTER_DB_NAME, ConfigError, Settings, load_settings
from render_pipeline.store import migrations

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Dagster's opt-in batched event writes: a ranged run's per-partition events (materialization
# planning at launch, outputs) go to PostgreSQL a batch at a time instead of one INSERT each.
# Set for every process `up` starts; the run workers inherit it.
DAGSTER_RUN_ENV = {"DAGSTER_EVENT_BATCH_SIZE": "64"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("up", help="start the web UI and daemon on the configured (or embedded) stack")
    parser.add_argument("--host", default="127.0.0.1", help="web UI address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="web UI port (default 3000)")
    parser.add_argument("--prepare-only", action="store_true", help="prepare everything, print the environment, exit")
    parser.set_defaults(func=run)


def prepare(settings: Settings) -> dict[str, str]:
    """Make the database, schema, object store and DAGSTER_HOME ready; return the env to run with."""
    env: dict[str, str] = {"RENDER_PIPELINE_HOME": str(settings.home)}
    if settings.database.embedded:
        app_url, dagster_url = embedded_urls(settings.home)
        env["DATABASE_URL"] = app_url
        print(f"embedded PostgreSQL running in {settings.home / 'pgdata'}")
    else:
        app_url = settings.database.conninfo or ""
        dagster_url = settings.dagster_database_url or _dagster_url_beside(app_url)

    database = PostgresResource(url=app_url)
    try:
        with database.connection() as conn:
            for migration in migrations.upgrade(conn):
                print(f"applied migration {migration.version:03d}_{migration.name}")
            migrations.seed(conn)
            print(f"schema at version {migrations.current_version(conn):03d}; styles and presets seeded")
    finally:
        database.close()

    store = object_store_from_settings(settings.object_store)
    store.check_writable()
    print(f"object store: {store.describe()}")

    dagster_home = settings.home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env["DAGSTER_HOME"] = str(dagster_home)
    env["DAGSTER_PG_URL"] = dagster_url
    env.update(DAGSTER_RUN_ENV)
    return env


def _dagster_url_beside(app_conninfo: str) -> str:
    """Dagster's storage in a `dagster` database on the app's server, via psycopg2."""
    admin = make_conninfo(app_conninfo, dbname="postgres")
    try:
        ensure_database(admin, DEFAULT_DAGSTER_DB_NAME)
    except psycopg.Error as exc:
        raise ConfigError(
            "DAGSTER_PG_URL",
            f"could not create the '{DEFAULT_DAGSTER_DB_NAME}' database ({str(exc).strip().splitlines()[0]})",
            "create it, or set DAGSTER_PG_URL=postgresql+psycopg2://user:pass@host:5432/dagster",
        ) from None
    return dagster_storage_url(app_conninfo, DEFAULT_DAGSTER_DB_NAME)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    env = prepare(settings)
    if args.prepare_only:
        for name in ("RENDER_PIPELINE_HOME", "DAGSTER_HOME"):
            print(f"{name}={env[name]}")
        return 0

    command = [
        sys.executable, "-m", "dagster", "dev",
        "-w", str(PROJECT_ROOT / "workspace.yaml"),
        "-h", args.host, "-p", str(args.port),
        "--log-level", settings.log_level.lower(),
    ]
    print(f"starting the web UI on http://{args.host}:{args.port} and the daemon (Ctrl-C stops both)")
    try:
        # Run from DAGSTER_HOME so the repository's dagster.yaml template is not mistaken for it.
        return _run_foreground(command, {**os.environ, **env}, cwd=Path(env["DAGSTER_HOME"]))
    finally:
        if settings.database.embedded:
            stop_embedded_server(settings.home)
            print("embedded PostgreSQL stopped")


def _run_foreground(command: list[str], env: dict[str, str], cwd: Path) -> int:
    """Run `dagster dev` with default signal handling (a background shell sets SIGINT to
    ignored, which `dagster dev` inherits) and pass SIGINT/SIGTERM on to it."""

    def reset_signals() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    process = subprocess.Popen(command, env=env, cwd=cwd, preexec_fn=reset_signals)

    def forward(signum: int, _frame) -> None:
        process.send_signal(signal.SIGINT if signum == signal.SIGTERM else signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    return process.wait()
