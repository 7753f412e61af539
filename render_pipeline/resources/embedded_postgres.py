"""The embedded PostgreSQL server used when no database is configured.

`pgserver` ships real PostgreSQL binaries on PyPI; the server listens on a Unix socket inside
its data directory only, so nothing is exposed on the network.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import psycopg
from psycopg import sql

from render_pipeline.settings import DEFAULT_DAGSTER_DB_NAME, DEFAULT_DB_NAME


def _pgserver():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        import pgserver
        import pgserver._commands
        import pgserver.utils
    return pgserver


def embedded_server(home: Path):
    """Start (or attach to) the embedded server under ``home/pgdata``; it outlives this process."""
    home.mkdir(parents=True, exist_ok=True)
    return _pgserver().get_server(home / "pgdata", cleanup_mode=None)


def embedded_urls(home: Path) -> tuple[str, str]:
    """Start the server, create the app and Dagster databases, return their URLs (app, dagster).

    The Dagster URL names the psycopg2 driver: SQLAlchemy 2.1 reads a bare postgresql:// as
    psycopg 3, on which dagster-postgres' NOTIFY fails.
    """
    server = embedded_server(home)
    ensure_database(server.get_uri(), DEFAULT_DB_NAME)
    ensure_database(server.get_uri(), DEFAULT_DAGSTER_DB_NAME)
    app_url = server.get_uri(DEFAULT_DB_NAME)
    dagster_url = server.get_uri(DEFAULT_DAGSTER_DB_NAME).replace("postgresql://", "postgresql+psycopg2://", 1)
    return app_url, dagster_url


def embedded_server_running(home: Path) -> bool:
    pgdata = home / "pgdata"
    info = _pgserver().utils.PostmasterInfo.read_from_pgdata(pgdata) if pgdata.is_dir() else None
    return info is not None and info.is_running()


def stop_embedded_server(home: Path) -> None:
    pgdata = home / "pgdata"
    if (pgdata / "postmaster.pid").exists():
        _pgserver()._commands.pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata, user="pgserver" if _is_root() else None)


def ensure_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _is_root() -> bool:
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0
