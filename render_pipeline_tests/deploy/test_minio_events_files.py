"""deploy/minio: the events table SQL gives MinIO's access-format table, a role that may only
append to it, and rows the uploads sensor's reader reads; the setup script is valid bash."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pgserver
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from render_pipeline.store import upload_events as events_store

MINIO = Path(__file__).resolve().parents[2] / "deploy" / "minio"
PSQL = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"


def test_the_setup_script_is_valid_bash_and_adds_the_put_event_for_uploads():
    script = (MINIO / "setup-events.sh").read_text()
    subprocess.run(["bash", "-n", str(MINIO / "setup-events.sh")], check=True)
    assert "format=access" in script
    assert "arn:minio:sqs::render:postgresql --event put --prefix uploads/" in script


def test_the_table_sql_makes_an_append_only_role_and_rows_the_reader_reads(database_url):
    subprocess.run([str(PSQL), database_url, "-v", "ON_ERROR_STOP=1", "-v", "minio_password=s3cret-events",
                    "-q", "-f", str(MINIO / "events-table.sql")], check=True, capture_output=True)
    subprocess.run([str(PSQL), database_url, "-v", "ON_ERROR_STOP=1", "-q", "-f", str(MINIO / "events-table.sql")],
                   check=True, capture_output=True)  # again, without a role: nothing changes
    as_minio = make_conninfo(database_url, user="minio_events", password="s3cret-events")
    now = datetime.now(UTC)
    event = {"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": "b"},
                                                                      "object": {"key": "uploads%2Fa%2Fp.jpg"}}}]}
    with psycopg.connect(as_minio, autocommit=True) as conn:
        conn.execute("SELECT 1 FROM minio_events")  # MinIO's existence check
        conn.execute("INSERT INTO minio_events (event_time, event_data) VALUES (%s, %s)", (now, json.dumps(event)))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM minio_events")
    with psycopg.connect(database_url, autocommit=True) as conn:
        [row] = events_store.events_after(conn, "minio_events", None, 10, start_within=timedelta(minutes=1))
    assert json.loads(row.data) == event and row.position.time == now
