"""The embedded PostgreSQL server used when no database is configured.

`pgserver` ships real PostgreSQL binaries on PyPI; the server listens on a Unix socket inside
its data directory only, so nothing is exposed on the network.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from render_pipeline.settings import DEFAULT_DAGSTER_DB_NAME, DEFAULT_DB_NAME


def _pgserver():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        import pgserver
        import pgserver._commands
        import pgserver.utils
    return pgserver


_handles: dict[Path, object] = {}  # pgserver's in-process handles, released when we stop a server


def embedded_server(home: Path):
    """Start (or attach to) the embedded server under ``home/pgdata``; it outlives this process."""
    home.mkdir(parents=True, exist_ok=True)
    pgdata = (home / "pgdata").resolve()
    server = _pgserver().get_server(pgdata, cleanup_mode=None)
    _handles[pgdata] = server
    return server


def embedded_urls(home: Path) -> tuple[str, str]:
    """Start the server, create the app and Dagster databases, return their URLs (app, dagster)."""
    server = embedded_server(home)
    ensure_database(server.get_uri(), DEFAULT_DB_NAME)
    ensure_database(server.get_uri(), DEFAULT_DAGSTER_DB_NAME)
    return server.get_uri(DEFAULT_DB_NAME), dagster_storage_url(server.get_uri(), DEFAULT_DAGSTER_DB_NAME)


def dagster_storage_url(conninfo: str, dbname: str) -> str:
    """A SQLAlchemy URL for Dagster's storage in ``dbname`` on the server of ``conninfo``.

    It names the psycopg2 driver: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, on
    which dagster-postgres' NOTIFY fails.
    """
    info = conninfo_to_dict(conninfo)
    user = quote(str(info.get("user", "postgres")), safe="")
    password = ":" + quote(str(info["password"]), safe="") if info.get("password") else ""
    host = str(info.get("host", "localhost"))
    port = info.get("port", "5432")
    if host.startswith("/"):  # a Unix socket directory
        return f"postgresql+psycopg2://{user}{password}@/{dbname}?host={host}&port={port}"
    return f"postgresql+psycopg2://{user}{password}@{host}:{port}/{dbname}"


def client_bin_dir() -> Path:
    """Where pgserver keeps its PostgreSQL programs (pg_dump, pg_restore, psql …)."""
    return Path(_pgserver()._commands.POSTGRES_BIN_PATH)


def embedded_server_running(home: Path) -> bool:
    return _running_postmaster(home) is not None


def running_server_uri(home: Path, database: str | None = None) -> str | None:
    """The URI of the embedded server if it is running, else None; never starts it."""
    info = _running_postmaster(home)
    return info.get_uri(database=database) if info is not None else None


def _running_postmaster(home: Path):
    pgdata = home / "pgdata"
    info = _pgserver().utils.PostmasterInfo.read_from_pgdata(pgdata) if pgdata.is_dir() else None
    return info if info is not None and info.is_running() else None


def stop_embedded_server(home: Path) -> None:
    pgdata = (home / "pgdata").resolve()
    handle = _handles.pop(pgdata, None)
    if handle is not None:
        handle.cleanup()  # with cleanup_mode None this only forgets the handle, so a later start starts
    if (pgdata / "postmaster.pid").exists():
        try:
            _pgserver()._commands.pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata,
                                         user="pgserver" if _is_root() else None)
        except subprocess.CalledProcessError:
            # As root, pg_ctl runs as the server's user, who loses its way to pgdata when a
            # parent directory's permissions are reset meanwhile (pytest does so to its base
            # temp directory): the same fast shutdown, asked by signal, still works.
            if not _fast_shutdown_by_signal(pgdata):
                raise


def _fast_shutdown_by_signal(pgdata: Path, timeout: float = 60) -> bool:
    info = _pgserver().utils.PostmasterInfo.read_from_pgdata(pgdata)
    if info is None:
        return False
    try:
        os.kill(info.pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(info.pid, 0)
            time.sleep(0.1)
    except ProcessLookupError:
        return True
    return False


def ensure_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0
