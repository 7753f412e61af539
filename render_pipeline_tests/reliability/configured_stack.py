"""A live stack (`render-pipeline up`) on a PostgreSQL server the test owns, as a configured
production database is: `up` neither starts nor stops it, so a drill can stop it mid-run
(`pg_ctl stop -m fast`) and start it again, and the app tables and Dagster's storage go down
together.  The stack's S3 is moto behind a FaultProxy; the test's own hands (uploads, the
audit's listing) go straight to moto.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.embedded_postgres import dagster_storage_url, embedded_server, ensure_database
from render_pipeline.settings import DEFAULT_DAGSTER_DB_NAME, DEFAULT_DB_NAME
from render_pipeline.stack import read_record
from render_pipeline_tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY
from render_pipeline_tests.live_stack import LiveStack
from render_pipeline_tests.reliability.harness import Audit, audit, list_keys
from render_pipeline_tests.reliability.test_postgres_faults import OwnPostgres

ACTIVE_RUN_STATUSES = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


def own_postgres(home: Path) -> OwnPostgres:
    """A PostgreSQL server of the test's own, with the app and Dagster databases created
    (empty: `up` migrates them, as it would a new production server)."""
    server = embedded_server(home)
    for name in (DEFAULT_DB_NAME, DEFAULT_DAGSTER_DB_NAME):
        ensure_database(server.get_uri(), name)
    return OwnPostgres(home, server, server.get_uri(DEFAULT_DB_NAME))


def stack_environment(postgres: OwnPostgres, s3_url: str, bucket: str, **settings: str) -> dict[str, str]:
    """The settings a user sets for a configured PostgreSQL and S3 (production timeouts)."""
    return {
        "DATABASE_URL": postgres.url,
        "DAGSTER_PG_URL": dagster_storage_url(postgres.server.get_uri(), DEFAULT_DAGSTER_DB_NAME),
        "MINIO_ENDPOINT": s3_url, "MINIO_ACCESS_KEY": S3_ACCESS_KEY, "MINIO_SECRET_KEY": S3_SECRET_KEY,
        "MINIO_BUCKET": bucket, **settings,
    }


class ConfiguredStack(LiveStack):
    """LiveStack whose databases are ``postgres``'s, not an embedded server under its home."""

    def __init__(self, home: Path, postgres: OwnPostgres, env: dict[str, str], **kwargs) -> None:
        self.postgres = postgres
        super().__init__(home, env, **kwargs)

    def server_uri(self, database: str | None = None) -> str:
        uri = self.postgres.server.get_uri()
        return make_conninfo(uri, dbname=database) if database else uri

    def _server_running(self) -> bool:
        return True  # the test's own server, started before the stack

    # ---- what the drills look at -------------------------------------------------------------

    def child(self, name: str) -> int | None:
        record = read_record(self.home)
        return record.children.get(name) if record is not None else None

    def run_workers(self) -> list[int]:
        return [pid for pid in self.processes() if b"--multiprocessing-fork" in _cmdline(pid)]

    def active_runs(self) -> int:
        """Dagster runs queued or in progress (read from the run storage directly)."""
        with psycopg.connect(self.server_uri(DEFAULT_DAGSTER_DB_NAME), autocommit=True) as conn:
            return conn.execute("SELECT count(*) FROM runs WHERE status = ANY(%s)",
                                (list(ACTIVE_RUN_STATUSES),)).fetchone()[0]

    def render_counts(self, key_pattern: str = "uploads/%") -> dict[str, int]:
        rows = self.query("SELECT r.status, count(*) AS n FROM renders r JOIN assets a ON a.id = r.asset_id "
                          "WHERE a.object_key LIKE %s GROUP BY r.status", (key_pattern,))
        return {row["status"]: row["n"] for row in rows}

    def audit(self, boto, bucket: str, *, styles: tuple[str, ...], presets: tuple[str, ...]) -> Audit:
        database = PostgresResource(url=self.app_url())
        try:
            return audit(database, list_keys(boto, bucket, ""), styles=styles, presets=presets)
        finally:
            database.close()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` size (VmRSS, VmHWM) in KiB; 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0
