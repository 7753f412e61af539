"""Configuration from the environment, using the old pop-render service's variable names.

Every setting is validated up front so a bad value fails at start with one line naming the
variable, instead of a traceback deep inside a run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from psycopg.conninfo import conninfo_to_dict, make_conninfo

DEFAULT_DB_NAME = "aso_render"
DEFAULT_DAGSTER_DB_NAME = "dagster"
DEFAULT_BUCKET = "render-assets"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A missing or malformed setting; the message names the variable and how to fix it."""

    def __init__(self, variable: str, problem: str, hint: str = "") -> None:
        self.variable = variable
        message = f"{variable}: {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the app's tables live. ``conninfo is None`` means the embedded server."""

    conninfo: str | None
    source: str  # "DATABASE_URL", "DB_HOST" or "embedded"

    @property
    def embedded(self) -> bool:
        return self.conninfo is None


@dataclass(frozen=True)
class ObjectStoreSettings:
    """An S3/MinIO endpoint when ``endpoint_url`` is set, else a local directory."""

    endpoint_url: str | None
    access_key: str | None
    secret_key: str | None
    bucket: str
    region: str
    connect_timeout: float
    read_timeout: float
    max_attempts: int
    local_root: Path
    retry_seconds: float = 45.0

    @property
    def is_s3(self) -> bool:
        return self.endpoint_url is not None

    def describe(self) -> str:
        """A secret-free description for logs and `doctor`."""
        if self.is_s3:
            return f"s3 {self.endpoint_url} bucket={self.bucket}"
        return f"local directory {self.local_root}"


@dataclass(frozen=True)
class UploadEventsSettings:
    """MinIO's bucket notifications (`notify_postgres`, access format) as a PostgreSQL table:
    ``table`` None means off; ``database_url`` None means the table is in the app database."""

    table: str | None
    database_url: str | None

    @property
    def enabled(self) -> bool:
        return self.table is not None


@dataclass(frozen=True)
class Settings:
    home: Path
    database: DatabaseSettings
    dagster_database_url: str | None
    object_store: ObjectStoreSettings
    log_level: str
    default_styles: tuple[str, ...] | None  # None: every style in the catalogue
    default_presets: tuple[str, ...] | None  # None: the catalogue's default set
    upload_events: UploadEventsSettings = UploadEventsSettings(table=None, database_url=None)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raises ConfigError naming the first bad variable."""
    env = os.environ if environ is None else environ
    home = Path(_get(env, "RENDER_PIPELINE_HOME") or ".render_pipeline").expanduser().resolve()
    return Settings(
        home=home,
        database=_database_settings(env),
        dagster_database_url=_dagster_database_url(env),
        object_store=_object_store_settings(env, home),
        log_level=_log_level(env),
        default_styles=_id_list(env, "RENDER_DEFAULT_STYLES"),
        default_presets=_id_list(env, "RENDER_DEFAULT_PRESETS"),
        upload_events=_upload_events_settings(env),
    )


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _database_settings(env: Mapping[str, str]) -> DatabaseSettings:
    url = _get(env, "DATABASE_URL")
    db_vars = ("DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD")
    if url is not None:
        if "://" in url and not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                "DATABASE_URL",
                "must be a postgresql:// URL or a libpq key=value string",
                "e.g. postgresql://render:secret@db:5432/aso_render",
            )
        try:
            conninfo_to_dict(url)
        except Exception as exc:  # psycopg raises ProgrammingError with the parse problem
            raise ConfigError("DATABASE_URL", f"cannot be parsed: {first_line(exc)}") from None
        return DatabaseSettings(conninfo=url, source="DATABASE_URL")

    if not any(_get(env, name) for name in db_vars):
        return DatabaseSettings(conninfo=None, source="embedded")

    host = _get(env, "DB_HOST")
    if host is None:
        raise ConfigError("DB_HOST", "is required when other DB_* variables are set", "e.g. DB_HOST=localhost")
    port = _port(env, "DB_PORT", default=5432)
    conninfo = make_conninfo(
        host=host,
        port=str(port),
        dbname=_get(env, "DB_NAME") or DEFAULT_DB_NAME,
        user=_get(env, "DB_USER") or "postgres",
        password=env.get("DB_PASSWORD") or None,
    )
    return DatabaseSettings(conninfo=conninfo, source="DB_HOST")


def _dagster_database_url(env: Mapping[str, str]) -> str | None:
    url = _get(env, "DAGSTER_PG_URL")
    if url is not None and not url.startswith("postgresql"):
        raise ConfigError("DAGSTER_PG_URL", "must be a postgresql+psycopg2:// URL")
    return url


def _object_store_settings(env: Mapping[str, str], home: Path) -> ObjectStoreSettings:
    endpoint = _get(env, "MINIO_ENDPOINT")
    access_key = _get(env, "MINIO_ACCESS_KEY")
    secret_key = _get(env, "MINIO_SECRET_KEY")
    if endpoint is not None:
        if "://" not in endpoint:
            # The old service configured MinIO as host:port plus MINIO_SECURE.
            scheme = "https" if _flag(env, "MINIO_SECURE") else "http"
            endpoint = f"{scheme}://{endpoint}"
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("MINIO_ENDPOINT", "must be host:port or an http(s):// URL", "e.g. http://minio:9000")
        try:
            parts.port
        except ValueError:
            raise ConfigError("MINIO_ENDPOINT", "has an invalid port", "e.g. http://minio:9000") from None
        for name, value in (("MINIO_ACCESS_KEY", access_key), ("MINIO_SECRET_KEY", secret_key)):
            if value is None:
                raise ConfigError(name, "is required when MINIO_ENDPOINT is set")
    bucket = _get(env, "MINIO_BUCKET") or DEFAULT_BUCKET
    if not (3 <= len(bucket) <= 63) or not all(c.islower() or c.isdigit() or c in "-." for c in bucket):
        raise ConfigError("MINIO_BUCKET", f"{bucket!r} is not a valid bucket name", "3-63 chars of a-z 0-9 . -")
    local_root = Path(_get(env, "LOCAL_STORE_ROOT") or home / "objects").expanduser().resolve()
    return ObjectStoreSettings(
        endpoint_url=endpoint,
        access_key=access_key,
        secret_key=secret_key,
        bucket=bucket,
        region=_get(env, "MINIO_REGION") or "us-east-1",
        connect_timeout=_positive_float(env, "MINIO_CONNECT_TIMEOUT", default=5.0),
        read_timeout=_positive_float(env, "MINIO_READ_TIMEOUT", default=30.0),
        max_attempts=int(_positive_float(env, "MINIO_MAX_ATTEMPTS", default=3)),
        local_root=local_root,
        retry_seconds=_positive_float(env, "MINIO_RETRY_SECONDS", default=45.0),
    )


# A PostgreSQL identifier as MinIO's `table=` names it: `name` or `schema.name`, unquoted.
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?")


def _upload_events_settings(env: Mapping[str, str]) -> UploadEventsSettings:
    table = _get(env, "RENDER_EVENTS_TABLE")
    url = _get(env, "RENDER_EVENTS_DATABASE_URL")
    if table is not None and not _TABLE_NAME.fullmatch(table):
        raise ConfigError("RENDER_EVENTS_TABLE", f"{table!r} is not a table name",
                          "letters, digits and _, optionally schema-qualified, e.g. minio_events or events.minio")
    if url is not None:
        if table is None:
            raise ConfigError("RENDER_EVENTS_DATABASE_URL", "is set but RENDER_EVENTS_TABLE is not",
                              "name the notification table, e.g. RENDER_EVENTS_TABLE=minio_events")
        if "://" in url and not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("RENDER_EVENTS_DATABASE_URL", "must be a postgresql:// URL or a libpq key=value string")
        try:
            conninfo_to_dict(url)
        except Exception as exc:  # psycopg raises ProgrammingError with the parse problem
            raise ConfigError("RENDER_EVENTS_DATABASE_URL", f"cannot be parsed: {first_line(exc)}") from None
    return UploadEventsSettings(table=table, database_url=url)


def _log_level(env: Mapping[str, str]) -> str:
    level = (_get(env, "LOG_LEVEL") or "INFO").upper()
    if level not in LOG_LEVELS:
        raise ConfigError("LOG_LEVEL", f"{level!r} is not a log level", "one of " + ", ".join(LOG_LEVELS))
    return level


def _id_list(env: Mapping[str, str], name: str) -> tuple[str, ...] | None:
    raw = _get(env, name)
    if raw is None:
        return None
    ids = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if not ids:
        raise ConfigError(name, "lists no ids", "comma-separated, e.g. pop-poster,duotone")
    return ids


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ConfigError(name, f"{raw!r} is not a port number", "1-65535, e.g. 5432")
    return int(raw)


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"{raw!r} is not a number") from None
    if not value > 0:
        raise ConfigError(name, f"{raw!r} must be greater than zero")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    return (_get(env, name) or "").lower() in ("1", "true", "yes", "on")


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's text (its type when it has none): libpq and
    psycopg put the reason first and add context lines an operator does not need."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
