"""`render-pipeline doctor [--json]`: is the running stack up, configured and keeping up?

One line per check, exit status 1 if any fails.  It checks the stack `render-pipeline up`
recorded under RENDER_PIPELINE_HOME (and says so when this shell's settings differ), or this
shell's settings when no stack is recorded.  Beyond the infrastructure it judges the pipeline:
daemons by a heartbeat an operator can use (a minute, not Dagster's 30), runs whose worker is
gone, renders and uploads stuck past their limits, the last hour's failure rate, the queue and
the pause switch.  Every check has a deadline, so a stopped database or object store gives a
clear failure within seconds; the embedded database is checked, never started.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from render_pipeline.operations.health import HEARTBEAT_TOLERANCE_SECONDS
from render_pipeline.resources.embedded_postgres import embedded_server_running
from render_pipeline.settings import ConfigError, Settings, first_line, load_settings
from render_pipeline.stack import StackRecord, read_record, selected_configuration

CHECK_TIMEOUT_SECONDS = 20.0
MISSING_SECRET = "not-set-in-this-shell"
OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass
class Check:
    name: str
    status: str
    detail: str
    seconds: float = 0.0


class CheckFailed(Exception):
    """A check's expected failure; the message is the one-line detail."""


class CheckWarning(Exception):
    """Something an operator should look at that does not stop the pipeline."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("doctor", help="check the stack: database, store, Dagster, daemon, pipeline state")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.add_argument("--timeout", type=float, default=CHECK_TIMEOUT_SECONDS,
                        help=f"seconds allowed per check (default {CHECK_TIMEOUT_SECONDS:g})")
    parser.add_argument("--heartbeat-tolerance", type=float, default=HEARTBEAT_TOLERANCE_SECONDS,
                        help=f"a daemon is stale after this many seconds without a heartbeat "
                             f"(default {HEARTBEAT_TOLERANCE_SECONDS:g})")
    parser.set_defaults(func=run)


def database_for(settings: Settings, *, connect_timeout: int = 5):
    """The app database resource, refusing to start a stopped embedded server."""
    from render_pipeline.resources.database import PostgresResource

    if settings.database.embedded and not embedded_server_running(settings.home):
        raise CheckFailed(f"the embedded PostgreSQL under {settings.home / 'pgdata'} is not running "
                          f"(start it with `render-pipeline up`, or set DATABASE_URL)")
    database = PostgresResource.from_settings(settings.database, settings.home)
    return database.model_copy(update={"connect_timeout_seconds": connect_timeout, "pool_max_size": 1})


def effective_settings(shell: Settings) -> tuple[Settings, Check]:
    """The settings to check — the running stack's when one is recorded — and a check saying
    which, and how this shell differs."""
    record = read_record(shell.home)
    if record is None:
        return shell, Check("configuration", OK, f"no `render-pipeline up` recorded under {shell.home}: "
                                                 f"checking this shell's settings")
    if not record.is_alive():
        return shell, Check("configuration", WARN, f"the stack recorded under {shell.home} (pid {record.pid}) "
                                                   f"is not running: checking this shell's settings")
    environment, missing = record.settings_environment(dict(os.environ))
    for name in missing:  # the checks that need it fail with the store's or server's own refusal
        if name in environment or not name.startswith("the password"):
            environment.setdefault(name, MISSING_SECRET)
    try:
        settings = load_settings(environment)
    except ConfigError as exc:
        return shell, Check("configuration", FAIL, f"the stack's recorded settings do not load: {exc}")
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = record.dagster_home
    children = "".join(f", {name} pid {pid}" for name, pid in record.children.items())
    running = f"stack pid {record.pid}{children} at {record.web_url} since {_when(record.started_at)}"
    differences = _differences(selected_configuration(shell), record)
    if os.environ["DAGSTER_HOME"] != record.dagster_home:
        differences.append(f"DAGSTER_HOME: shell {os.environ['DAGSTER_HOME']}, stack {record.dagster_home}")
    notes = []
    if differences:
        notes.append("this shell differs from the stack (" + "; ".join(differences) + "): checking the stack's")
    if missing:
        notes.append(f"the stack uses {', '.join(missing)}, which this shell does not set: checks needing "
                     f"them fail; export them as the stack has them")
    if notes:
        return settings, Check("configuration", WARN, f"{running}; " + "; ".join(notes))
    return settings, Check("configuration", OK, f"{running}; this shell's settings match")


def _differences(shell: dict[str, str], record: StackRecord) -> list[str]:
    return [f"{name}: shell {shell.get(name)!r}, stack {value!r}"
            for name, value in record.configuration.items() if shell.get(name) != value]


def _check_database(settings: Settings) -> str:
    from render_pipeline.resources.database import DatabaseUnavailable
    from render_pipeline.stack import psql_uri
    from render_pipeline.store import migrations

    database = database_for(settings)
    try:
        with database.connection() as conn:
            current, latest = migrations.current_version(conn), migrations.latest_version()
        where = psql_uri(database.conninfo())
    except DatabaseUnavailable as exc:
        raise CheckFailed(str(exc)) from None
    finally:
        database.close()
    if current < latest:
        raise CheckFailed(f"{where}: schema at version {current:03d}, code expects {latest:03d} "
                          f"(run `render-pipeline db upgrade`)")
    if current > latest:
        raise CheckWarning(f"{where}: schema version {current:03d} is newer than this code ({latest:03d})")
    return f"{where}, schema version {current:03d}"


def _check_object_store(settings: Settings) -> str:
    from render_pipeline.resources.factory import object_store_from_settings
    from render_pipeline.resources.object_store import ObjectStoreError

    # Short timeouts and one attempt: a stopped endpoint should fail in seconds.
    quick = dataclasses.replace(settings.object_store, connect_timeout=min(settings.object_store.connect_timeout, 3.0),
                                read_timeout=min(settings.object_store.read_timeout, 10.0), max_attempts=1)
    store = object_store_from_settings(quick)
    try:
        store.check_usable()
    except ObjectStoreError as exc:
        raise CheckFailed(str(exc)) from None
    return f"{store.describe()}: uploads/ and renders/ can be listed"


@functools.cache
def _instance(settings: Settings):
    """The stack's Dagster instance, loaded once for all checks."""
    from render_pipeline.stack import NoInstance, stack_instance

    try:
        return stack_instance(settings)
    except NoInstance as exc:
        raise CheckFailed(str(exc)) from None


def _check_dagster_instance(settings: Settings) -> str:
    from render_pipeline.stack import psql_uri

    instance = _instance(settings)
    try:
        runs = instance.get_runs_count()
    except Exception as exc:
        raise CheckFailed(f"Dagster run storage does not answer: {first_line(exc)}") from None
    storage = type(instance.run_storage).__name__
    if instance.is_ephemeral:
        raise CheckWarning(f"ephemeral instance ({storage}): runs are not kept; set DAGSTER_HOME")
    url = os.environ.get("DAGSTER_PG_URL")
    where = psql_uri(url) if url and storage.startswith("Postgres") else os.environ["DAGSTER_HOME"]
    return f"{where} ({storage}), {runs} run(s) recorded"


def _check_daemon(settings: Settings, tolerance: float) -> str:
    from render_pipeline.operations.health import stale_daemons

    instance = _instance(settings)
    if not instance.get_required_daemon_types():
        raise CheckWarning("this instance needs no daemon (ephemeral)")
    stale = stale_daemons(instance, tolerance)
    if stale:
        ages = ", ".join(f"{name} ({'never' if age is None else f'{age:.0f} s ago'})" for name, age in sorted(stale.items()))
        raise CheckFailed(f"no heartbeat within {tolerance:g} s from {ages}: is `render-pipeline up` (or "
                          f"`dagster-daemon run`) running? restart it")
    return f"{len(instance.get_required_daemon_types())} daemon(s) heartbeating within {tolerance:g} s"


def _check_automation(settings: Settings) -> str:
    from render_pipeline.operations.pause import code_location, format_since
    from render_pipeline.run_queue import read_pause

    instance = _instance(settings)
    record = read_pause(instance)
    paused = {item.name for item in record.stopped} if record else set()
    stopped, running = [], 0
    with code_location(instance) as repository:
        for item in [*repository.get_sensors(), *repository.get_schedules()]:
            stored = instance.get_instigator_state(item.get_remote_origin_id(), item.selector_id)
            if item.get_current_instigator_state(stored).is_running:
                running += 1
            elif item.name not in paused:
                stopped.append(item.name)
    if stopped:
        raise CheckFailed(f"stopped: {', '.join(sorted(stopped))} ({running} running); start them in the UI "
                          f"(Automation) — uploads are not rendered or maintenance does not run while stopped")
    if record is not None:
        raise CheckWarning(f"paused since {format_since(record)} ({record.reason!r}): {len(paused)} stopped by "
                           f"`render-pipeline pause`; `render-pipeline resume` gives them back")
    return f"{running} sensor(s) and schedule(s) running"


def _check_run_queue(settings: Settings) -> str:
    from render_pipeline.operations.pause import format_since, queued_run_count, runs_in_progress
    from render_pipeline.run_queue import read_pause

    instance = _instance(settings)
    record = read_pause(instance)
    depth = f"{queued_run_count(instance)} run(s) queued, {len(runs_in_progress(instance))} in progress"
    if record is not None:
        raise CheckWarning(f"PAUSED since {format_since(record)} ({record.reason!r}): nothing launches; {depth}")
    limit = instance.get_concurrency_config().run_queue_config.max_concurrent_runs
    return f"launching (at most {limit} at once); {depth}"


def _pipeline_checks(settings: Settings) -> list[Check]:
    """The backlog in the app tables and runs whose worker is gone."""
    from render_pipeline.operations import health
    from render_pipeline.store.health import pipeline_counts

    database = database_for(settings)
    try:
        with database.connection() as conn:
            counts = pipeline_counts(conn, started_limit=health.STARTED_LIMIT, queued_limit=health.QUEUED_LIMIT,
                                     registered_limit=health.REGISTERED_LIMIT)
    finally:
        database.close()
    dead = health.dead_worker_runs(_instance(settings))
    return [Check(name, finding.status, finding.detail) for name, finding in health.judge_pipeline(counts, dead)]


def _timed(name: str, func: Callable[[], object], timeout: float) -> list[Check]:
    """Run one check (or a group returning checks) in a daemon thread so a hung connection
    cannot hold the command."""
    outcome: list[Check] = []
    started = time.monotonic()

    def target() -> None:
        try:
            result = func()
            outcome.extend(result if isinstance(result, list) else [Check(name, OK, str(result))])
        except CheckWarning as exc:
            outcome.append(Check(name, WARN, str(exc)))
        except CheckFailed as exc:
            outcome.append(Check(name, FAIL, str(exc)))
        except Exception as exc:
            outcome.append(Check(name, FAIL, f"{type(exc).__name__}: {first_line(exc)}"))

    thread = threading.Thread(target=target, name=f"doctor-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    checks = list(outcome) or [Check(name, FAIL, f"no answer within {timeout:g} s")]
    for check in checks:
        check.seconds = round(time.monotonic() - started, 3)
    return checks


def run_checks(timeout: float = CHECK_TIMEOUT_SECONDS,
               heartbeat_tolerance: float = HEARTBEAT_TOLERANCE_SECONDS) -> list[Check]:
    try:
        shell = load_settings()
    except ConfigError as exc:
        return [Check("configuration", FAIL, str(exc))]
    _instance.cache_clear()  # the environment may have changed since the last call
    settings, configuration = effective_settings(shell)
    checks = [configuration]
    for name, func in (
        ("database", lambda: _check_database(settings)),
        ("object_store", lambda: _check_object_store(settings)),
        ("dagster_instance", lambda: _check_dagster_instance(settings)),
        ("daemon", lambda: _check_daemon(settings, heartbeat_tolerance)),
        ("sensors_schedules", lambda: _check_automation(settings)),
        ("run_queue", lambda: _check_run_queue(settings)),
        ("pipeline", lambda: _pipeline_checks(settings)),
    ):
        checks.extend(_timed(name, func, timeout))
    return checks


def run(args: argparse.Namespace) -> int:
    checks = run_checks(args.timeout, args.heartbeat_tolerance)
    if args.json:
        print(json.dumps([dataclasses.asdict(c) for c in checks], indent=2))
    else:
        for check in checks:
            print(f"{check.status.upper():<4}  {check.name:<18} {check.detail}")
    return 1 if any(c.status == FAIL for c in checks) else 0


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
