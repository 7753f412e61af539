"""`doctor`'s judgement of the pipeline, on the state a fault drill left (a run whose worker
died holding a slot, renders stuck `started`, a burst of failures, uploads never validated)."""

from __future__ import annotations

import subprocess
import time
from datetime import timedelta

from dagster import DagsterRunStatus
from dagster._core.events import EngineEventData
from dagster._core.test_utils import create_run_for_test
from dagster._daemon.types import DaemonHeartbeat

from render_pipeline.operations import health
from render_pipeline.store.health import pipeline_counts
from render_pipeline_tests.maintenance.scenario import insert_asset, insert_render
from render_pipeline_tests.processes import dead_pid


def _counts(database):
    with database.connection() as conn:
        return pipeline_counts(conn, started_limit=health.STARTED_LIMIT, queued_limit=health.QUEUED_LIMIT,
                               registered_limit=health.REGISTERED_LIMIT)


def test_the_drills_stuck_state_is_named_with_counts_and_fixes(database, instance):
    run = create_run_for_test(instance, job_name="render_uploads", status=DagsterRunStatus.STARTED)
    instance.report_engine_event("Started process for run.", run, EngineEventData.in_process(dead_pid()))
    alive = create_run_for_test(instance, job_name="render_uploads", status=DagsterRunStatus.STARTED)
    instance.report_engine_event("Started process for run.", alive, EngineEventData.in_process(_live_worker_pid()))
    spawned = create_run_for_test(instance, job_name="render_uploads", status=DagsterRunStatus.STARTED)
    instance.report_engine_event("Started process for run.", spawned,
                                 EngineEventData.in_process(_live_worker_pid("--multiprocessing-fork")))
    with database.connection() as conn:
        for n in range(30):
            insert_render(conn, insert_asset(conn, f"uploads/stuck{n}/a.jpg"), "halftone", "started",
                          age=timedelta(hours=2), run_id=run.run_id)
        for n in range(216):
            insert_render(conn, insert_asset(conn, f"uploads/failed{n}/a.jpg"), "duotone", "failed",
                          age=timedelta(minutes=10), error="upload: S3 put failed: 503")
        insert_render(conn, insert_asset(conn, "uploads/fine/a.jpg"), "duotone", "started", age=timedelta(minutes=5))
        for n in range(32):
            conn.execute("""INSERT INTO assets (id, partition_key, object_key, filename, status, requested_at)
                            VALUES (gen_random_uuid(), %s, %s, 'a.jpg', 'registered', now() - interval '1 hour')""",
                         (f"waiting{n}/a.jpg", f"uploads/waiting{n}/a.jpg"))

    findings = dict(health.judge_pipeline(_counts(database), health.dead_worker_runs(instance)))

    assert findings["dead_runs"].status == "fail"
    assert "1 run(s) STARTED with no live worker" in findings["dead_runs"].detail
    assert run.run_id[:8] in findings["dead_runs"].detail and alive.run_id[:8] not in findings["dead_runs"].detail
    assert spawned.run_id[:8] not in findings["dead_runs"].detail
    assert findings["stuck_renders"].status == "fail"
    assert "30 render(s) `started` over 60 min" in findings["stuck_renders"].detail
    assert "stale_render_reaper_job" in findings["stuck_renders"].detail
    assert findings["stuck_uploads"].status == "warn" and "32 upload(s)" in findings["stuck_uploads"].detail
    assert findings["failure_rate"].status == "fail"
    assert "216 of 216 render(s) failed in the last hour" in findings["failure_rate"].detail
    assert "render-pipeline requeue" in findings["failure_rate"].detail


def test_a_quiet_healthy_pipeline_is_all_ok(database, instance):
    with database.connection() as conn:
        asset = insert_asset(conn, "uploads/ok/a.jpg")
        insert_render(conn, asset, "duotone", "completed", age=timedelta(minutes=1))
    findings = dict(health.judge_pipeline(_counts(database), health.dead_worker_runs(instance)))
    assert {finding.status for finding in findings.values()} == {"ok"}
    assert findings["failure_rate"].detail.startswith("0 of 1 render(s)")


def test_stale_daemons_are_named_after_a_minute_not_dagsters_half_hour(instance):
    now = time.time()
    for daemon_type in instance.get_required_daemon_types():
        instance.add_daemon_heartbeat(DaemonHeartbeat(now - 5, daemon_type, None, None))
    assert health.stale_daemons(instance, tolerance=60, now=now) == {}
    instance.add_daemon_heartbeat(DaemonHeartbeat(now - 90, "SENSOR", None, None))
    instance.add_daemon_heartbeat(DaemonHeartbeat(now - 90, "SCHEDULER", None, None))  # beats once a minute
    stale = health.stale_daemons(instance, tolerance=60, now=now)
    assert set(stale) == {"SENSOR"} and round(stale["SENSOR"]) == 90
    assert set(health.stale_daemons(instance, tolerance=60, now=now + 60)) >= {"SENSOR", "SCHEDULER"}


_workers: list[subprocess.Popen] = []


def _live_worker_pid(mark: str = "dagster-run-worker") -> int:
    """A live process whose command line is marked as a run worker's is: `dagster api
    execute_run …`, or the multiprocessing child the daemon's gRPC server runs a run in."""
    process = subprocess.Popen(["python3", "-c", "import time; time.sleep(120)", mark])
    _workers.append(process)
    return process.pid


def teardown_module() -> None:
    for process in _workers:
        process.kill()
        process.wait()
