"""`render-pipeline up`: the whole system on one machine, kept up until it is stopped.

Starts the embedded PostgreSQL when no database is configured, applies migrations and seeds,
checks the object store, prepares DAGSTER_HOME, records the stack in RENDER_PIPELINE_HOME
(stack.json: its pid and its children's), marks runs left STARTED by a previous stack whose
worker is gone as failed (on the embedded database, which no other machine uses; the failure
sensor then fails their renders with the reason and the daemon retries them), then supervises
the web UI (`dagster-webserver`) and the daemon (`dagster-daemon run`, so sensors and
schedules are live), each in its own process group:

- a child that exits is restarted with backoff (1 s, doubling up to 60 s); the daemon is
  also restarted when it hangs: alive, but no heartbeat in Dagster's storage for
  RENDER_DAEMON_HANG_SECONDS (default 60; it beats every 30 s);
- Ctrl-C or SIGTERM stops the daemon first (no new runs), gives runs in progress
  ``--run-grace`` seconds (default 30; Ctrl-C again: no wait), stops their workers and marks
  their runs failed, then stops the web UI and, last, the embedded PostgreSQL: within the
  grace plus about 40 s, leaving no process behind (every child's whole group is stopped,
  SIGKILL after 5 s).

Anything it started is stopped again if start-up fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import psycopg

from render_pipeline.operations.postgres_tools import Database
from render_pipeline.package_data import INSTANCE_TEMPLATE, WORKSPACE_FILE
from render_pipeline.resources.embedded_postgres import embedded_server_running, stop_embedded_server
from render_pipeline.resources.factory import object_store_from_settings
from render_pipeline.resources.object_store import MissingBucket, S3ObjectStore
from render_pipeline.settings import ConfigError, Settings, load_settings
from render_pipeline.stack import (
    DAGSTER_HOME_DIR,
    DatabaseUrls,
    heartbeat_ages,
    new_record,
    prepare_databases,
    record_children,
    remove_record,
    running_stack,
    write_record,
)
from render_pipeline.supervisor import Child, Supervisor, log

# Dagster's opt-in batched event writes: a ranged run's per-partition events (materialization
# planning at launch, outputs) go to PostgreSQL a batch at a time instead of one INSERT each.
# Set for every process `up` starts; the run workers inherit it.
DAGSTER_RUN_ENV = {"DAGSTER_EVENT_BATCH_SIZE": "64"}
HANG_VARIABLE = "RENDER_DAEMON_HANG_SECONDS"
DEFAULT_HANG_SECONDS = 60.0
MIN_HANG_SECONDS = 35.0  # the daemon writes its heartbeats every 30 s
DAEMON_START_ALLOWANCE_SECONDS = 180.0  # Dagster's own limit for a code server to start
GRPC_INFO_TAG = ".dagster/grpc_info"  # set on each run by Dagster's default run launcher


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("up", help="start the web UI and daemon on the configured (or embedded) stack")
    parser.add_argument("--host", default="127.0.0.1", help="web UI address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="web UI port (default 3000)")
    parser.add_argument("--create-bucket", action="store_true", help="create the S3/MinIO bucket if it is missing")
    parser.add_argument("--prepare-only", action="store_true", help="prepare everything, print the environment, exit")
    parser.add_argument("--run-grace", type=float, default=30.0, metavar="SECONDS",
                        help="on stop, how long runs in progress may take to finish before their workers are "
                             "stopped and the runs marked failed (default 30)")
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
    shutil.copyfile(INSTANCE_TEMPLATE, dagster_home / "dagster.yaml")
    env["DAGSTER_HOME"] = str(dagster_home)
    env.update(DAGSTER_RUN_ENV)
    return env


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    hang_seconds = daemon_hang_seconds(os.environ)
    if not 0 <= args.run_grace <= 3600:
        raise ConfigError("--run-grace", f"{args.run_grace:g} is not between 0 and 3600 seconds", "e.g. --run-grace 30")
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
        return _serve(args, settings, env, hang_seconds)
    finally:
        if settings.database.embedded:
            _stop_database(settings)


def daemon_hang_seconds(environ: dict[str, str]) -> float:
    text = environ.get(HANG_VARIABLE, "").strip()
    try:
        seconds = float(text) if text else DEFAULT_HANG_SECONDS
    except ValueError:
        seconds = -1.0
    if not MIN_HANG_SECONDS <= seconds <= 3600:
        raise ConfigError(HANG_VARIABLE, f"{text!r} is not a number of seconds from {MIN_HANG_SECONDS:g} to 3600 "
                                         f"(the daemon beats every 30 s)", f"e.g. {HANG_VARIABLE}=60")
    return seconds


def _stop_database(settings: Settings) -> None:
    stop_embedded_server(settings.home)
    log("embedded PostgreSQL stopped")


def _serve(args: argparse.Namespace, settings: Settings, env: dict[str, str], hang_seconds: float) -> int:
    web_url = f"http://{args.host}:{args.port}"
    urls = DatabaseUrls(app=env.get("DATABASE_URL") or settings.database.conninfo or "", dagster=env["DAGSTER_PG_URL"])
    write_record(settings.home, new_record(settings, urls, web_url))
    stop, hurry = threading.Event(), threading.Event()

    def request_stop(signum: int, _frame) -> None:
        if stop.is_set():
            hurry.set()
        else:
            log(f"{signal.Signals(signum).name}: stopping (daemon, runs in progress, web UI, database)")
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    os.environ.update(env)  # this process reads the instance too (interrupted runs)
    supervisor = Supervisor(
        children=_children(args, settings, Database.from_dagster_url(urls.dagster), hang_seconds),
        env=dict(os.environ), cwd=Path(env["DAGSTER_HOME"]),  # not the repository, whose dagster.yaml is a template
        on_change=lambda pids: record_children(settings.home, pids),
    )
    try:
        if settings.database.embedded and not settings.dagster_database_url:  # storage only this machine uses
            _with_instance(fail_runs_without_worker)
        if not stop.is_set():
            log(f"starting the web UI on {web_url} and the daemon (Ctrl-C stops both)")
            supervisor.start()
            supervisor.watch(stop)
        return 0
    finally:
        supervisor.stop(args.run_grace, hurry, after_runs=lambda command_lines: _with_instance(
            lambda instance: fail_runs_of_stopped_servers(instance, command_lines)))
        remove_record(settings.home, os.getpid())


def _children(args: argparse.Namespace, settings: Settings, dagster: Database, hang_seconds: float) -> list[Child]:
    bin_dir = Path(sys.executable).parent
    workspace = str(WORKSPACE_FILE)
    level = settings.log_level.lower()
    return [
        Child("web UI", [str(bin_dir / "dagster-webserver"), "-w", workspace, "-h", args.host, "-p", str(args.port),
                         "--dagster-log-level", level]),
        Child("daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", workspace, "--log-level", level],
              runs_work=True, hang_reason=_daemon_hang_check(dagster, hang_seconds)),
    ]


def _daemon_hang_check(dagster: Database, limit: float):
    """Why a live daemon counts as hung: its newest heartbeat since it started is older than
    ``limit``, or it has written none within the start-up allowance.  A database that cannot be
    reached decides nothing (that is the database's fault, not the daemon's)."""

    def hang_reason(child: Child) -> str | None:
        up_for = time.time() - child.started_at
        try:
            ages = [age for age in heartbeat_ages(dagster).values() if age < up_for]
        except psycopg.Error:
            return None
        if ages and min(ages) > limit:
            return f"is hung: no heartbeat for {min(ages):.0f} s (limit {limit:g} s)"
        if not ages and up_for > DAEMON_START_ALLOWANCE_SECONDS:
            return f"is hung: no heartbeat in the {up_for:.0f} s since it started"
        return None

    return hang_reason


def _with_instance(action) -> None:
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:  # the stack's, through DAGSTER_HOME and DAGSTER_PG_URL
        action(instance)


def fail_runs_without_worker(instance) -> None:
    """At start: runs STARTED on this machine whose worker process is gone (a previous stack
    was killed) are marked failed.  The failure sensor then fails their unfinished renders with
    the reason, and the daemon retries the run (dagster.yaml's run_retries).  A run left
    STARTING is failed by Dagster's run monitoring after its start timeout."""
    from render_pipeline.operations.health import dead_worker_runs

    for run_id, _pid in dead_worker_runs(instance):
        _mark_failed(instance, run_id, "run worker gone: found by `render-pipeline up` at start")


def fail_runs_of_stopped_servers(instance, command_lines: list[bytes]) -> None:
    """At stop: the runs launched through the gRPC servers just stopped (their workers with
    them) are marked failed; each run names its server's socket in a tag."""
    from dagster import DagsterRunStatus, RunsFilter

    sockets = {args[n + 1] for args in (line.decode(errors="replace").split("\0") for line in command_lines)
               for n, arg in enumerate(args[:-1]) if arg == "--socket"}
    if not sockets:
        return
    for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED])):
        if _launch_socket(run.tags) in sockets:
            _mark_failed(instance, run.run_id, "run worker stopped: `render-pipeline up` shut down before the run "
                                               "finished")


def _launch_socket(tags: dict[str, str]) -> str | None:
    """The socket of the gRPC server that launched the run (Dagster's default run launcher)."""
    try:
        return json.loads(tags.get(GRPC_INFO_TAG, "{}")).get("socket")
    except (ValueError, AttributeError):
        return None


def _mark_failed(instance, run_id: str, reason: str) -> None:
    run = instance.get_run_by_id(run_id)
    if run is not None and not run.is_finished:
        instance.report_run_failed(run, message=reason)
        log(f"run {run_id} marked failed: {reason}")
