"""`render-pipeline doctor [--json]`: is everything the pipeline needs up and configured?

One line per check, exit status 1 if any fails.  Every check has a deadline, so a stopped
database or object store gives a clear failure within seconds, never a hang; the embedded
database is checked, never started.
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

from render_pipeline.settings import Settings, load_settings

CHECK_TIMEOUT_SECONDS = 20.0
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
    parser = subparsers.add_parser("doctor", help="check database, object store, Dagster instance, daemon, sensors")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.add_argument("--timeout", type=float, default=CHECK_TIMEOUT_SECONDS,
                        help=f"seconds allowed per check (default {CHECK_TIMEOUT_SECONDS:g})")
    parser.set_defaults(func=run)


def dagster_environment(settings: Settings) -> None:
    """Point DAGSTER_HOME (and DAGSTER_PG_URL for the embedded server) at what `render-pipeline
    up` uses when the operator's shell has not set them."""
    home = settings.home / "dagster_home"
    if not os.environ.get("DAGSTER_HOME") and (home / "dagster.yaml").exists():
        os.environ["DAGSTER_HOME"] = str(home)
    if not os.environ.get("DAGSTER_PG_URL") and settings.database.embedded and embedded_running(settings):
        from render_pipeline.resources.embedded_postgres import embedded_urls

        os.environ["DAGSTER_PG_URL"] = embedded_urls(settings.home)[1]


def embedded_running(settings: Settings) -> bool:
    from render_pipeline.resources.embedded_postgres import embedded_server_running

    return embedded_server_running(settings.home)


def database_for(settings: Settings, *, connect_timeout: int = 5):
    """The app database resource, refusing to start a stopped embedded server."""
    from render_pipeline.resources.database import PostgresResource

    if settings.database.embedded and not embedded_running(settings):
        raise CheckFailed(f"the embedded PostgreSQL under {settings.home / 'pgdata'} is not running "
                          f"(start it with `render-pipeline up`, or set DATABASE_URL)")
    database = PostgresResource.from_settings(settings.database, settings.home)
    return database.model_copy(update={"connect_timeout_seconds": connect_timeout, "pool_max_size": 1})


def _check_database(settings: Settings) -> str:
    from render_pipeline.resources.database import DatabaseUnavailable
    from render_pipeline.store import migrations

    database = database_for(settings)
    try:
        with database.connection() as conn:
            current, latest = migrations.current_version(conn), migrations.latest_version()
        where = database.describe()
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
        store.check_writable()
    except ObjectStoreError as exc:
        raise CheckFailed(str(exc)) from None
    return f"{store.describe()}: write, read and delete work"


@functools.cache
def _instance():
    """The Dagster instance, loaded once for all checks."""
    from dagster import DagsterInstance

    if not os.environ.get("DAGSTER_HOME"):
        raise CheckFailed("DAGSTER_HOME is not set (and no dagster_home under RENDER_PIPELINE_HOME): "
                          "set it to the directory holding dagster.yaml")
    try:
        return DagsterInstance.get()
    except Exception as exc:
        if "DAGSTER_PG_URL" in str(exc):  # dagster.yaml reads it; Dagster's own message is a schema dump
            raise CheckFailed("Dagster's storage is unreachable: DAGSTER_PG_URL is not set and the embedded "
                              "PostgreSQL is not running (start it with `render-pipeline up`, or set "
                              "DAGSTER_PG_URL)") from None
        raise CheckFailed(f"cannot load the Dagster instance from {os.environ['DAGSTER_HOME']}: "
                          f"{_first_line(exc)}") from None


def _check_dagster_instance() -> str:
    instance = _instance()
    try:
        runs = instance.get_runs_count()
    except Exception as exc:
        raise CheckFailed(f"Dagster run storage does not answer: {_first_line(exc)}") from None
    storage = type(instance.run_storage).__name__
    if instance.is_ephemeral:
        raise CheckWarning(f"ephemeral instance ({storage}): runs are not kept; set DAGSTER_HOME")
    return f"{os.environ['DAGSTER_HOME']} ({storage}), {runs} run(s) recorded"


def _check_daemon() -> str:
    instance = _instance()
    statuses = instance.get_daemon_statuses()
    if not statuses:
        raise CheckWarning("this instance needs no daemon (ephemeral)")
    unhealthy = sorted(name for name, status in statuses.items() if status.required and not status.healthy)
    if unhealthy:
        raise CheckFailed(f"no recent heartbeat from daemon(s) {', '.join(unhealthy)}: "
                          f"is `dagster-daemon run` (or `render-pipeline up`) running?")
    return f"{len(statuses)} daemon(s) heartbeating"


def _check_automation() -> str:
    from dagster import DefaultScheduleStatus, DefaultSensorStatus
    from dagster._core.scheduler.instigation import InstigatorStatus

    from render_pipeline.definitions import defs

    instance = _instance()
    stored = {state.instigator_name: state.status for state in instance.all_instigator_state()}
    repository = defs.get_repository_def()
    stopped, running = [], 0
    for item in [*repository.sensor_defs, *repository.schedule_defs]:
        state = stored.get(item.name)
        if state is None:
            on = item.default_status in (DefaultSensorStatus.RUNNING, DefaultScheduleStatus.RUNNING)
        else:
            on = state in (InstigatorStatus.RUNNING, InstigatorStatus.DECLARED_IN_CODE)
        if on:
            running += 1
        else:
            stopped.append(item.name)
    if stopped:
        raise CheckFailed(f"stopped: {', '.join(sorted(stopped))} ({running} running); start them in the UI "
                          f"(Automation) — uploads are not rendered or maintenance does not run while stopped")
    return f"{running} sensor(s) and schedule(s) running"


def _timed(name: str, func: Callable[[], str], timeout: float) -> Check:
    """Run one check in a daemon thread so a hung connection cannot hold the command."""
    outcome: list[Check] = []
    started = time.monotonic()

    def target() -> None:
        try:
            outcome.append(Check(name, OK, func()))
        except CheckWarning as exc:
            outcome.append(Check(name, WARN, str(exc)))
        except CheckFailed as exc:
            outcome.append(Check(name, FAIL, str(exc)))
        except Exception as exc:
            outcome.append(Check(name, FAIL, f"{type(exc).__name__}: {_first_line(exc)}"))

    thread = threading.Thread(target=target, name=f"doctor-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    check = outcome[0] if outcome else Check(name, FAIL, f"no answer within {timeout:g} s")
    check.seconds = round(time.monotonic() - started, 3)
    return check


def run_checks(timeout: float = CHECK_TIMEOUT_SECONDS) -> list[Check]:
    from render_pipeline.settings import ConfigError

    try:
        settings = load_settings()
    except ConfigError as exc:
        return [Check("configuration", FAIL, str(exc))]
    dagster_environment(settings)
    _instance.cache_clear()  # the environment may have changed since the last call
    checks = [Check("configuration", OK, f"home {settings.home}, log level {settings.log_level}")]
    for name, func in (
        ("database", lambda: _check_database(settings)),
        ("object_store", lambda: _check_object_store(settings)),
        ("dagster_instance", _check_dagster_instance),
        ("daemon", _check_daemon),
        ("sensors_schedules", _check_automation),
    ):
        checks.append(_timed(name, func, timeout))
    return checks


def run(args: argparse.Namespace) -> int:
    checks = run_checks(args.timeout)
    if args.json:
        print(json.dumps([dataclasses.asdict(c) for c in checks], indent=2))
    else:
        for check in checks:
            print(f"{check.status.upper():<4}  {check.name:<18} {check.detail}")
    return 1 if any(c.status == FAIL for c in checks) else 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

