"""`render-pipeline up`: the whole system on one machine.

Starts the embedded PostgreSQL when no database is configured, applies migrations and seeds,
checks the object store, prepares DAGSTER_HOME, records the stack's configuration in
RENDER_PIPELINE_HOME, then runs `dg dev` (web UI + daemon, so sensors and schedules are live)
until interrupted.  Anything it started is stopped again if start-up fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from render_pipeline.resources.embedded_postgres import embedded_server_running, stop_embedded_server
from render_pipeline.resources.factory import object_store_from_settings
from render_pipeline.resources.object_store import MissingBucket, S3ObjectStore
from render_pipeline.settings import Settings, load_settings
from render_pipeline.stack import (
    DAGSTER_HOME_DIR,
    DatabaseUrls,
    new_record,
    prepare_databases,
    remove_record,
    running_stack,
    write_record,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Dagster's opt-in batched event writes: a ranged run's per-partition events (materialization
# planning at launch, outputs) go to PostgreSQL a batch at a time instead of one INSERT each.
# Set for every process `up` starts; the run workers inherit it.
DAGSTER_RUN_ENV = {"DAGSTER_EVENT_BATCH_SIZE": "64"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("up", help="start the web UI and daemon on the configured (or embedded) stack")
    parser.add_argument("--host", default="127.0.0.1", help="web UI address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="web UI port (default 3000)")
    parser.add_argument("--create-bucket", action="store_true", help="create the S3/MinIO bucket if it is missing")
    parser.add_argument("--prepare-only", action="store_true", help="prepare everything, print the environment, exit")
    parser.set_defaults(func=run)


def prepare(settings: Settings, create_bucket: bool = False) -> dict[str, str]:
    """Make the database, schema, object store and DAGSTER_HOME ready; return the env to run with."""
    urls = prepare_databases(settings)
    env: dict[str, str] = {"RENDER_PIPELINE_HOME": str(settings.home), "DAGSTER_PG_URL": urls.dagster}
    if settings.database.embedded:
        env["DATABASE_URL"] = urls.app

    store = object_store_from_settings(settings.object_store)
    try:
        store.check_usable()
    except MissingBucket:
        if not (create_bucket and isinstance(store, S3ObjectStore)):
            raise
        store.create_bucket()
        store.check_usable()
        print(f"created bucket {store.bucket}")
    print(f"object store: {store.describe()}")

    dagster_home = settings.home / DAGSTER_HOME_DIR
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    env["DAGSTER_HOME"] = str(dagster_home)
    env.update(DAGSTER_RUN_ENV)
    return env


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    other = running_stack(settings.home)
    if other is not None:
        print(f"error: a stack is already running from {settings.home} (pid {other.pid}, {other.web_url})",
              file=sys.stderr)
        return 1
    started_database = settings.database.embedded and not embedded_server_running(settings.home)
    try:
        env = prepare(settings, create_bucket=args.create_bucket)
    except BaseException:
        if started_database:
            _stop_database(settings)
        raise
    if args.prepare_only:
        for name in ("RENDER_PIPELINE_HOME", "DAGSTER_HOME"):
            print(f"{name}={env[name]}")
        return 0
    try:
        return _serve(args, settings, env)
    finally:
        if settings.database.embedded:
            _stop_database(settings)


def _stop_database(settings: Settings) -> None:
    stop_embedded_server(settings.home)
    print("embedded PostgreSQL stopped")


def _serve(args: argparse.Namespace, settings: Settings, env: dict[str, str]) -> int:
    web_url = f"http://{args.host}:{args.port}"
    urls = DatabaseUrls(app=env.get("DATABASE_URL") or settings.database.conninfo or "", dagster=env["DAGSTER_PG_URL"])
    write_record(settings.home, new_record(settings, urls, web_url))
    command = [
        str(Path(sys.executable).parent / "dg"), "dev",
        "-w", str(PROJECT_ROOT / "workspace.yaml"),
        "-h", args.host, "-p", str(args.port),
        "--log-level", settings.log_level.lower(),
    ]
    print(f"starting the web UI on {web_url} and the daemon (Ctrl-C stops both)")
    try:
        # Run from DAGSTER_HOME so the repository's dagster.yaml template is not mistaken for it.
        return _run_foreground(command, {**os.environ, **env}, cwd=Path(env["DAGSTER_HOME"]))
    finally:
        remove_record(settings.home, os.getpid())


def _run_foreground(command: list[str], env: dict[str, str], cwd: Path) -> int:
    """Run `dg dev` with default signal handling (a background shell sets SIGINT to ignored,
    which the child would inherit) and pass SIGINT/SIGTERM on to it."""

    def reset_signals() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    process = subprocess.Popen(command, env=env, cwd=cwd, preexec_fn=reset_signals)

    def forward(signum: int, _frame) -> None:
        process.send_signal(signal.SIGINT if signum == signal.SIGTERM else signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    return process.wait()
