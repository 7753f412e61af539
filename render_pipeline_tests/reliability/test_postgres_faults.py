"""Scenario 3: PostgreSQL goes down or drops connections during a run.

These tests own their PostgreSQL server (a dedicated embedded data directory), so stopping it
cannot disturb the session server other tests use.  The restart scenario keeps Dagster's run
and event storage on that server too, as production does; the others keep it apart (sqlite)
to fail only the app's tables.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from dagster import instance_for_test

from render_pipeline.maintenance.reaper import ReaperConfig, reap_stale_renders
from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.embedded_postgres import (
    dagster_storage_url,
    embedded_server,
    ensure_database,
    stop_embedded_server,
)
from render_pipeline.store import migrations
from render_pipeline_tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY
from render_pipeline_tests.orchestration_helpers import definitions_for, jpeg_bytes
from render_pipeline_tests.reliability.conftest import CLIENT_TIMEOUTS
from render_pipeline_tests.reliability.harness import Pipeline, audit, list_keys, project_storage, requeue

pytestmark = pytest.mark.reliability

PRESETS = ("play-feature",)
OUTAGE_SECONDS = 25.0


@dataclass
class OwnPostgres:
    home: Path
    server: object
    url: str

    def stop(self) -> None:
        stop_embedded_server(self.home)  # pg_ctl stop -m fast: every connection is cut

    def start(self, attempts: int = 3) -> None:
        """Start the server again (pg_ctl start gives up after 10 s; a loaded machine may need
        another go)."""
        for attempt in range(attempts):
            try:
                self.server.ensure_postgres_running()
                return
            except Exception:
                if attempt == attempts - 1:
                    raise

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


@pytest.fixture
def shared_instance(own_pg, tmp_path):
    """Dagster's storage on the same server as the app tables, as in production."""
    ensure_database(own_pg.server.get_uri(), "dagster")
    home = tmp_path / "dagster_home"
    home.mkdir()
    url = dagster_storage_url(own_pg.server.get_uri(), "dagster")
    with instance_for_test(overrides=project_storage(url), temp_dir=str(home)) as instance:
        yield instance


def test_a_restart_of_the_shared_server_mid_run_loses_no_render(
    env, own_pg, app_db, proxy, boto, s3_bucket, shared_instance, soak
):
    """PostgreSQL — app tables and Dagster's run and event storage — stops for ~25 s while the
    upload step writes (renders `started`, objects going out), then every backend is killed
    later in the run.  Statements and Dagster's own event writes wait for the server; a step
    that still fails is retried with its run by the daemon; no render is lost."""
    instance = shared_instance
    defs = definitions_for(env, presets=PRESETS)
    uploads = 8 if soak else 3
    for index in range(uploads):
        boto.put_object(Bucket=s3_bucket, Key=f"uploads/u{index}/p.jpg", Body=jpeg_bytes(64, 48, seed=index))
    pipeline = Pipeline(defs, instance)
    requests = pipeline.tick()
    restarted = threading.Event()
    outage: dict[str, float] = {}

    def restart() -> None:
        own_pg.start()
        outage["restarted"] = time.monotonic()
        restarted.set()

    def stop_for_a_while(_request) -> None:  # while the upload step writes, with renders `started`
        outage["stopped"] = time.monotonic()
        own_pg.stop()
        threading.Timer(OUTAGE_SECONDS, restart).start()

    killed: list[int] = []

    def kill_backends_once_restarted(_request) -> None:
        if restarted.is_set() and not killed:
            killed.append(own_pg.terminate_connections())

    # The first render PUT: the upload step then marks its rows with PostgreSQL down.
    proxy.add(action="pass", ops=("put",), key_prefix="renders/", nth=1, before=stop_for_a_while)
    # After the restart, every backend is killed (pg_terminate_backend) while an upload step writes.
    proxy.add(action="pass", ops=("put",), key_prefix="renders/", before=kill_backends_once_restarted)

    outcomes = pipeline.launch(requests)
    finished = time.monotonic()
    assert restarted.wait(OUTAGE_SECONDS + 30)
    retried = [pipeline.retry(o.run_id) for o in outcomes if not o.success]
    assert all(retry is not None and retry.success for retry in retried), "a failed run was not retried"
    assert killed and killed[0] >= 1
    result = _audit(app_db, boto, s3_bucket)
    assert not result.problems and result.renders == {"completed": uploads}, result.summary()
    print(f"outage {outage['restarted'] - outage['stopped']:.1f} s; runs done {finished - outage['restarted']:.1f} s "
          f"after the restart; {len(retried)} of {len(outcomes)} run(s) retried")


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
