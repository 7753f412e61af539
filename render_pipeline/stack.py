"""The stack on one machine: its databases, the configuration it runs with, whether it runs.

`render-pipeline up` and Dagster's own commands (through the instance's storage, see
`dagster_storage.py`) prepare the databases here.  `up` records what it runs with in
``$RENDER_PIPELINE_HOME/stack.json`` (its own pid and its children's), so that `doctor`,
`pause`, `metrics` and `backup` talk to the running stack rather than to whatever the current
shell's environment selects.  The record holds no secrets: connection strings are written
without passwords.  A command that rewrites the databases must not run under a live stack: it
checks the recorded `up` and the Dagster daemon's heartbeats (`refuse_if_running`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from render_pipeline.resources.embedded_postgres import (
    dagster_storage_url,
    embedded_server_running,
    embedded_urls,
    ensure_database,
)
from render_pipeline.operations.postgres_tools import Database, database_exists
from render_pipeline.settings import DEFAULT_DAGSTER_DB_NAME, DEFAULT_DB_NAME, ConfigError, Settings

STACK_FILE = "stack.json"
DAGSTER_HOME_DIR = "dagster_home"
# The settings' variables (settings.py): recorded as the stack ran with them, secrets excepted.
SETTINGS_VARIABLES = (
    "RENDER_PIPELINE_HOME", "DATABASE_URL", "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DAGSTER_PG_URL",
    "MINIO_ENDPOINT", "MINIO_SECURE", "MINIO_BUCKET", "MINIO_REGION", "MINIO_CONNECT_TIMEOUT",
    "MINIO_READ_TIMEOUT", "MINIO_MAX_ATTEMPTS", "LOCAL_STORE_ROOT", "LOG_LEVEL",
    "RENDER_DEFAULT_STYLES", "RENDER_DEFAULT_PRESETS", "RENDER_EVENTS_TABLE", "RENDER_EVENTS_DATABASE_URL",
)
SECRET_VARIABLES = ("DB_PASSWORD", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY")
URL_VARIABLES = ("DATABASE_URL", "DAGSTER_PG_URL", "RENDER_EVENTS_DATABASE_URL")  # recorded without their passwords
HEARTBEAT_WINDOW_SECONDS = 60


@dataclass(frozen=True)
class DatabaseUrls:
    app: str  # libpq conninfo, for psycopg
    dagster: str  # SQLAlchemy URL for Dagster's storage (psycopg2 driver)


def prepare_databases(settings: Settings, announce: Callable[[str], None] = print) -> DatabaseUrls:
    """Start the embedded server if no database is configured, create the app and Dagster
    databases, apply migrations and load the seeds.  Safe to run from several processes at
    once (pgserver locks its start, migrations take an advisory lock)."""
    from render_pipeline.resources.database import PostgresResource
    from render_pipeline.store import migrations

    if settings.database.embedded:
        app_url, dagster_url = embedded_urls(settings.home)
        announce(f"embedded PostgreSQL running in {settings.home / 'pgdata'}")
    else:
        app_url = settings.database.conninfo or ""
        dagster_url = settings.dagster_database_url or _dagster_url_beside(app_url)

    database = PostgresResource(url=app_url)
    try:
        with database.connection() as conn:
            for migration in migrations.upgrade(conn):
                announce(f"applied migration {migration.version:03d}_{migration.name}")
            migrations.seed(conn)
            announce(f"schema at version {migrations.current_version(conn):03d}; styles and presets seeded")
    finally:
        database.close()
    return DatabaseUrls(app=app_url, dagster=dagster_url)


def _dagster_url_beside(app_conninfo: str) -> str:
    """Dagster's storage in a `dagster` database on the app's server."""
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


def psql_uri(url: str) -> str:
    """A password-free ``postgresql://`` URI that psql and libpq accept, from a libpq conninfo
    or Dagster's SQLAlchemy URL (``postgresql+psycopg2://…``)."""
    info = conninfo_to_dict(url.replace("postgresql+psycopg2://", "postgresql://", 1))
    user = quote(str(info.get("user") or ""), safe="")
    host = str(info.get("host") or "")
    port = str(info.get("port") or "")
    dbname = quote(str(info.get("dbname") or ""), safe="")
    credentials = f"{user}@" if user else ""
    if host.startswith("/"):  # a Unix socket directory goes in the query string
        query = f"host={quote(host, safe='/')}" + (f"&port={port}" if port and port != "5432" else "")
        return f"postgresql://{credentials}/{dbname}?{query}"
    netloc = host + (f":{port}" if port else "")
    return f"postgresql://{credentials}{netloc}/{dbname}"


def has_password(url: str) -> bool:
    info = conninfo_to_dict(url.replace("postgresql+psycopg2://", "postgresql://", 1))
    return bool(info.get("password"))


def selected_configuration(settings: Settings) -> dict[str, str]:
    """What these settings select, without secrets: compared between a shell and the stack."""
    database = settings.database
    if database.embedded:
        app = f"embedded PostgreSQL in {settings.home / 'pgdata'}"
    else:
        app = psql_uri(database.conninfo or "")
    dagster = psql_uri(settings.dagster_database_url) if settings.dagster_database_url else "beside the app database"
    return {
        "home": str(settings.home),
        "database": app,
        "dagster_storage": dagster,
        "object_store": settings.object_store.describe(),
        "default_styles": ",".join(settings.default_styles or ()) or "all",
        "default_presets": ",".join(settings.default_presets or ()) or "catalogue defaults",
    }


@dataclass(frozen=True)
class StackRecord:
    """What a running `up` runs with; written at start, removed at exit."""

    pid: int
    started_at: float
    web_url: str
    dagster_home: str
    database_uri: str  # psql-ready, no password
    dagster_storage_uri: str  # psql-ready, no password
    configuration: dict[str, str]  # selected_configuration() of the stack's settings
    environment: dict[str, str]  # the settings' variables as the stack had them, without secrets
    secrets_set: list[str]  # names of the secret variables (and URL passwords) the stack had
    children: dict[str, int] = field(default_factory=dict)  # the processes `up` supervises: name → pid

    def is_alive(self) -> bool:
        return process_runs(self.pid, b"render-pipeline", b"render_pipeline")

    def settings_environment(self, shell: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        """The stack's settings variables, secrets taken from ``shell`` where it has them;
        returns (environment, names of the secrets the shell lacks)."""
        environment, missing = dict(self.environment), []
        for name in self.secrets_set:
            if name in URL_VARIABLES:
                same_url = shell.get(name) and _without_password(shell[name]) == environment.get(name)
                if same_url:
                    environment[name] = shell[name]
                else:
                    missing.append(f"the password in {name}")
            elif shell.get(name):
                environment[name] = shell[name]
            else:
                missing.append(name)
        return environment, missing


def write_record(home: Path, record: StackRecord) -> None:
    path = home / STACK_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(record), indent=2) + "\n")
    temporary.replace(path)


def read_record(home: Path) -> StackRecord | None:
    """The recorded stack, or None when there is none (or it cannot be read)."""
    try:
        return StackRecord(**json.loads((home / STACK_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def record_children(home: Path, children: dict[str, int]) -> None:
    """Note the current pids of the supervised processes (they change when one is restarted)."""
    record = read_record(home)
    if record is not None and record.pid == os.getpid():
        write_record(home, replace(record, children=dict(children)))


def remove_record(home: Path, pid: int) -> None:
    record = read_record(home)
    if record is not None and record.pid == pid:
        (home / STACK_FILE).unlink(missing_ok=True)


def running_stack(home: Path) -> StackRecord | None:
    """The record of an `up` that is still running under ``home``."""
    record = read_record(home)
    return record if record is not None and record.is_alive() else None


def recorded_environment(environ: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """(the settings' variables without secrets, names of the secrets that were set)."""
    environment, secrets = {}, []
    for name in SETTINGS_VARIABLES:
        value = environ.get(name, "").strip()
        if not value:
            continue
        if name in URL_VARIABLES and has_password(value):
            secrets.append(name)
            value = _without_password(value)
        environment[name] = value
    secrets += [name for name in SECRET_VARIABLES if environ.get(name, "").strip()]
    return environment, secrets


def _without_password(url: str) -> str:
    if "://" not in url:
        info = conninfo_to_dict(url)
        info.pop("password", None)
        return make_conninfo(**{k: str(v) for k, v in info.items()})
    scheme, _, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not at:
        return url
    return f"{scheme}://{credentials.partition(':')[0]}@{location}"


def new_record(settings: Settings, urls: DatabaseUrls, web_url: str,
               environ: dict[str, str] | None = None) -> StackRecord:
    environment, secrets = recorded_environment(dict(os.environ if environ is None else environ))
    environment["RENDER_PIPELINE_HOME"] = str(settings.home)
    return StackRecord(
        pid=os.getpid(),
        started_at=time.time(),
        web_url=web_url,
        dagster_home=str(settings.home / DAGSTER_HOME_DIR),
        database_uri=psql_uri(urls.app),
        dagster_storage_uri=psql_uri(urls.dagster),
        configuration=selected_configuration(settings),
        environment=environment,
        secrets_set=secrets,
    )


def use_stack_instance(settings: Settings) -> StackRecord | None:
    """Point DAGSTER_HOME (and, for the embedded server, DAGSTER_PG_URL) at the stack's own
    instance when the shell has not set them; returns the running stack's record, if any."""
    record = running_stack(settings.home)
    dagster_home = settings.home / DAGSTER_HOME_DIR
    if not os.environ.get("DAGSTER_HOME") and (dagster_home / "dagster.yaml").exists():
        os.environ["DAGSTER_HOME"] = str(dagster_home)
    if not os.environ.get("DAGSTER_PG_URL") and settings.database.embedded and embedded_server_running(settings.home):
        os.environ["DAGSTER_PG_URL"] = embedded_urls(settings.home)[1]
    return record


class NoInstance(RuntimeError):
    """The stack's Dagster instance cannot be loaded; the message says why and what to do."""


def stack_instance(settings: Settings):
    """The Dagster instance of the stack under ``settings.home`` (or the shell's DAGSTER_HOME),
    never starting a stopped embedded server."""
    from dagster import DagsterInstance

    use_stack_instance(settings)
    dagster_home = os.environ.get("DAGSTER_HOME")
    if not dagster_home:
        raise NoInstance(f"DAGSTER_HOME is not set and {settings.home / DAGSTER_HOME_DIR} holds no dagster.yaml: "
                         f"start the stack once with `render-pipeline up`, or set DAGSTER_HOME")
    if not os.environ.get("DAGSTER_PG_URL") and settings.database.embedded and _uses_stack_storage(dagster_home):
        raise NoInstance(f"the embedded PostgreSQL under {settings.home / 'pgdata'} is not running: "
                         f"start the stack with `render-pipeline up`, or set DAGSTER_PG_URL")
    try:
        return DagsterInstance.get()
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NoInstance(f"cannot load the Dagster instance from {dagster_home}: {detail}") from None


def _uses_stack_storage(dagster_home: str) -> bool:
    """Whether the instance's storage is ours without a URL, i.e. would start the embedded server."""
    import yaml

    try:
        config = yaml.safe_load((Path(dagster_home) / "dagster.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
    custom = (config.get("storage") or {}).get("custom") or {}
    return custom.get("module") == "render_pipeline.dagster_storage" and not (custom.get("config") or {}).get(
        "postgres_url")


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

    from render_pipeline.resources.embedded_postgres import embedded_server, stop_embedded_server

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
    record = running_stack(settings.home)
    if record is not None:
        raise StackRunning(f"the stack is running (`render-pipeline up`, pid {record.pid}, per "
                           f"{settings.home / STACK_FILE}): stop it first")
    if dagster is None:
        return
    recent = {name: age for name, age in heartbeat_ages(dagster).items() if age < HEARTBEAT_WINDOW_SECONDS}
    if recent:
        name, age = min(recent.items(), key=lambda item: item[1])
        raise StackRunning(f"the stack is running: Dagster daemon {name} heartbeated {age:.0f} s ago in "
                           f"{dagster.describe()}; stop `render-pipeline up` (or the daemon) and retry once "
                           f"{HEARTBEAT_WINDOW_SECONDS} s have passed")


def process_runs(pid: int, *names: bytes) -> bool:
    """Whether ``pid`` is alive and its command line names one of ``names`` (a recycled pid
    belongs to something else).  Without /proc the signal check alone decides."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return any(name in command_line for name in names)
