"""`pg_dump` / `pg_restore` on a server named by a libpq conninfo, password kept out of argv.

The client binaries come from the pgserver package (PostgreSQL 16), or from PG_BIN_DIR when the
configured server is newer than they are (pg_dump refuses to dump a newer server).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from render_pipeline.settings import ConfigError

TOOL_TIMEOUT_SECONDS = 3600


class ToolFailed(RuntimeError):
    """A PostgreSQL client program failed; the message is its first error line."""


@dataclass(frozen=True)
class Database:
    """One database: where it is (conninfo without the password) and its password apart."""

    conninfo: str
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_conninfo(cls, conninfo: str) -> Database:
        info = {k: v for k, v in conninfo_to_dict(conninfo).items() if v not in (None, "")}
        password = info.pop("password", None)
        return cls(make_conninfo(**info), str(password) if password is not None else None)

    @classmethod
    def from_dagster_url(cls, url: str) -> Database:
        """DAGSTER_PG_URL is a SQLAlchemy URL (`postgresql+psycopg2://…`); libpq reads the rest."""
        scheme, sep, rest = url.partition("://")
        if not sep or not scheme.startswith("postgresql"):
            raise ConfigError("DAGSTER_PG_URL", "must be a postgresql+psycopg2:// URL")
        return cls.from_conninfo(f"postgresql://{rest}")

    @property
    def name(self) -> str:
        return str(conninfo_to_dict(self.conninfo).get("dbname", ""))

    def on(self, dbname: str) -> Database:
        """The same server, another database."""
        return Database(make_conninfo(self.conninfo, dbname=dbname), self.password)

    def describe(self) -> str:
        info = conninfo_to_dict(self.conninfo)
        return f"{info.get('user', '')}@{info.get('host') or 'localhost'}:{info.get('port', 5432)}/{self.name}"

    def connect(self, **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.conninfo, password=self.password, connect_timeout=10, **kwargs)

    def libpq_url(self) -> str:
        """The full conninfo (password included) for code that connects in this process."""
        return make_conninfo(self.conninfo, password=self.password) if self.password else self.conninfo


def bin_dir() -> Path:
    configured = os.environ.get("PG_BIN_DIR", "").strip()
    if configured:
        directory = Path(configured).expanduser()
        if not (directory / "pg_dump").is_file():
            raise ConfigError("PG_BIN_DIR", f"{directory} holds no pg_dump", "the bin directory of a PostgreSQL client")
        return directory
    from render_pipeline.resources.embedded_postgres import client_bin_dir

    return client_bin_dir()


def _run(program: str, args: list[str], database: Database | None = None) -> str:
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    if database is not None and database.password is not None:
        env["PGPASSWORD"] = database.password  # never argv: it would show in `ps` and in logs
    try:
        done = subprocess.run([str(bin_dir() / program), *args], env=env, capture_output=True, text=True,
                              timeout=TOOL_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise ToolFailed(f"{program} did not finish within {TOOL_TIMEOUT_SECONDS} s") from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        raise ToolFailed(f"{program} failed: {lines[0] if lines else f'exit status {done.returncode}'}")
    return done.stdout


def dump(database: Database, path: Path, *, snapshot: str | None = None) -> None:
    """A custom-format dump: one consistent snapshot of the database (``snapshot``: an
    exported one, held open by the caller's transaction)."""
    shared = [f"--snapshot={snapshot}"] if snapshot else []
    _run("pg_dump", ["--format=custom", "--no-password", *shared, f"--file={path}",
                     f"--dbname={database.conninfo}"], database)


def check_dump(path: Path) -> int:
    """The number of entries in a dump's table of contents; ToolFailed if it cannot be read."""
    listing = _run("pg_restore", ["--list", str(path)])
    return sum(1 for line in listing.splitlines() if line and not line.startswith(";"))


def restore(database: Database, path: Path) -> None:
    """Load a dump into an empty database in one transaction: all of it or nothing."""
    _run("pg_restore", ["--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
                        "--no-password", f"--dbname={database.conninfo}", str(path)], database)


def client_version() -> str:
    return _run("pg_dump", ["--version"]).strip()


def database_exists(admin: Database, name: str) -> bool:
    with admin.connect(autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def other_sessions(admin: Database, names: list[str]) -> int:
    """Sessions other than ours connected to any of these databases."""
    with admin.connect(autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
                           (names,)).fetchone()
    return int(row[0])


def recreate_database(admin: Database, name: str) -> None:
    with admin.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(admin: Database, name: str) -> None:
    with admin.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def replace_database(admin: Database, staging: str, target: str) -> None:
    """Put the restored ``staging`` database in place of ``target``."""
    with admin.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(target)))
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(staging), sql.Identifier(target)))
