"""Scenario 3: PostgreSQL (the app database) goes down or drops connections during a run.

These tests own their PostgreSQL server (a dedicated embedded data directory), so stopping it
cannot disturb the session server other tests use.  Dagster's own storage stays up (sqlite
here); in production both usually live on one server — see docs/reliability.md.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from render_pipeline.maintenance.reaper import ReaperConfig, reap_stale_renders
from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.embedded_postgres import embedded_server, ensure_database, stop_embedded_server
from render_pipeline.store import migrations
from render_pipeline_tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY
from render_pipeline_tests.orchestration_helpers import definitions_for, jpeg_bytes
from render_pipeline_tests.reliability.conftest import CLIENT_TIMEOUTS
from render_pipeline_tests.reliability.harness import Pipeline, audit, list_keys, requeue

pytestmark = pytest.mark.reliability

PRESETS = ("play-feature",)


@dataclass
class OwnPostgres:
    home: Path
    server: object
    url: str

    def stop(self) -> None:
        stop_embedded_server(self.home)  # pg_ctl stop -m fast: every connection is cut

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def terminate_connections(self) -> int:
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        return len(rows)


@pytest.fixture
def own_pg(tmp_path) -> OwnPostgres:
    home = tmp_path / "own-pg"
    server = embedded_server(home)
    ensure_database(server.get_uri(), "app")
    url = server.get_uri("app")
    database = PostgresResource(url=url)
    with database.connection() as conn:
        migrations.upgrade(conn)
        migrations.seed(conn)
    database.close()
    yield OwnPostgres(home, server, url)
    stop_embedded_server(home)


@pytest.fixture
def env(own_pg, proxy, s3_bucket, monkeypatch) -> dict[str, str]:
    values = {
        "DATABASE_URL": own_pg.url, "MINIO_ENDPOINT": proxy.url, "MINIO_ACCESS_KEY": S3_ACCESS_KEY,
        "MINIO_SECRET_KEY": S3_SECRET_KEY, "MINIO_BUCKET": s3_bucket, "RENDER_DEFAULT_STYLES": "duotone",
        **CLIENT_TIMEOUTS,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def app_db(own_pg):
    resource = PostgresResource(url=own_pg.url)
    yield resource
    resource.close()


def _audit(app_db, boto, bucket):
    return audit(app_db, list_keys(boto, bucket, ""), styles=("duotone",), presets=PRESETS)


def test_short_outage_and_killed_connections_during_a_run_are_ridden_out(
    env, own_pg, app_db, proxy, boto, s3_bucket, instance
):
    defs = definitions_for(env, presets=PRESETS)
    for name in ("a", "b", "c"):
        boto.put_object(Bucket=s3_bucket, Key=f"uploads/{name}/p.jpg", Body=jpeg_bytes(64, 48, seed=ord(name)))
    restarted = threading.Event()

    def outage(_request) -> None:  # while the upload step writes, with renders `started`
        own_pg.stop()
        threading.Timer(3.0, lambda: (own_pg.start(), restarted.set())).start()

    killed: list[int] = []
    # The first render PUT: the upload step then marks its rows with PostgreSQL down.
    proxy.add(action="pass", ops=("put",), key_prefix="renders/", nth=1, before=outage)
    # Later, every backend is killed (pg_terminate_backend) while the upload step writes.
    proxy.add(action="pass", ops=("put",), key_prefix="renders/", nth=5,
              before=lambda _r: killed.append(own_pg.terminate_connections()))

    pipeline = Pipeline(defs, instance)
    outcomes = pipeline.launch(pipeline.tick())
    assert restarted.wait(30)
    assert outcomes and all(outcome.success for outcome in outcomes)
    assert killed and killed[0] >= 1
    result = _audit(app_db, boto, s3_bucket)
    assert not result.problems and result.renders == {"completed": 3}, result.summary()


def test_database_down_when_the_run_fails_is_reaped_then_requeued(
    env, own_pg, app_db, proxy, boto, s3_bucket, instance, monkeypatch
):
    """The run dies (S3 refuses every render PUT) while PostgreSQL is down: the run cannot mark
    its rows, the failure sensor cannot either (Dagster reports the sensor error and moves
    on), so rows stay `started`.  After the restart the stale-render reaper fails them with a
    reason, and a requeue completes them."""
    monkeypatch.setenv("MINIO_MAX_ATTEMPTS", "1")
    defs = definitions_for({**env, "MINIO_MAX_ATTEMPTS": "1"}, presets=PRESETS)
    boto.put_object(Bucket=s3_bucket, Key="uploads/d/p.jpg", Body=jpeg_bytes(64, 48, seed=5))
    pipeline = Pipeline(defs, instance)
    requests = pipeline.tick()

    stopped = threading.Event()

    def stop_once(_request) -> None:
        if not stopped.is_set():
            own_pg.stop()
            stopped.set()

    outage = proxy.add(ops=("put",), key_prefix="renders/", status=503, code="ServiceUnavailable", before=stop_once)
    [outcome] = [pipeline._execute_only(r) for r in requests]
    assert not outcome.success and stopped.is_set()
    with pytest.raises(Exception, match="cannot connect to PostgreSQL"):
        pipeline.notify_failure(outcome.run_id)

    own_pg.start()
    with app_db.connection() as conn:
        assert [r["status"] for r in conn.execute("SELECT status FROM renders").fetchall()] == ["started"]
        # The reaper's limit (60 min) passes.
        conn.execute("UPDATE renders SET started_at = started_at - interval '2 hours'")
    report = reap_stale_renders(app_db, instance, ReaperConfig(started_limit_minutes=60), logging.getLogger("reaper"))
    assert report.started_failed == 1 and report.runs_finished == 1
    with app_db.connection() as conn:
        row = conn.execute("SELECT * FROM renders").fetchone()
    assert row["status"] == "failed" and outcome.run_id in row["error_message"], row["error_message"]

    proxy.remove(outage)
    assert requeue(app_db, "status = 'failed'") == 1
    [requeued] = pipeline.launch(pipeline.requeue_tick())
    assert requeued.success
    result = _audit(app_db, boto, s3_bucket)
    assert not result.problems and result.renders == {"completed": 1}, result.summary()


def test_database_down_at_run_start_fails_the_run_cleanly_and_the_upload_is_requested_again(
    env, own_pg, app_db, proxy, boto, s3_bucket, instance
):
    defs = definitions_for(env, presets=PRESETS)
    boto.put_object(Bucket=s3_bucket, Key="uploads/e/p.jpg", Body=jpeg_bytes(64, 48, seed=6))
    pipeline = Pipeline(defs, instance)
    requests = pipeline.tick()
    own_pg.stop()
    [outcome] = [pipeline._execute_only(r) for r in requests]
    assert not outcome.success
    failure = next(e for e in outcome.all_events if e.event_type_value == "STEP_FAILURE")
    assert "cannot connect to PostgreSQL" in str(failure.event_specific_data.error.to_string())
    own_pg.start()
    pipeline.notify_failure(outcome.run_id)
    with app_db.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM renders").fetchone()["n"] == 0  # nothing half-done
        assert conn.execute("SELECT status FROM assets").fetchone()["status"] == "registered"
        # The re-request window passes: the next cycle requests the upload again.
        conn.execute("UPDATE assets SET requested_at = requested_at - interval '1 hour'")
    outcomes = pipeline.drain()
    assert len(outcomes) == 1 and outcomes[0].success
    result = _audit(app_db, boto, s3_bucket)
    assert not result.problems and result.renders == {"completed": 1}, result.summary()
