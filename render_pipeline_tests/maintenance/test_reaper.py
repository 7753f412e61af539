"""The stale-render reaper against a real Dagster instance: what happens to a stale render
depends on its run — missing, finished, or still alive past the limit."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from datetime import timedelta

from dagster import DagsterRunStatus
from dagster._core.events import EngineEventData
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._core.test_utils import create_run_for_test

from render_pipeline.maintenance.jobs import stale_render_reaper_job
from render_pipeline.maintenance.common import RENDER_KIND
from render_pipeline.maintenance.reaper import ReaperConfig, reap_stale_renders
from render_pipeline_tests.processes import dead_pid, free_port
from render_pipeline_tests.maintenance.scenario import STYLES, insert_asset, insert_render, snapshot

LOG = logging.getLogger("test")


def _seed(database, instance):
    ok = create_run_for_test(instance, job_name="render_uploads", status=DagsterRunStatus.SUCCESS, tags=RENDER_KIND)
    failed = create_run_for_test(instance, job_name="render_uploads", status=DagsterRunStatus.FAILURE, tags=RENDER_KIND)
    hung = create_run_for_test(instance, job_name="render_uploads", status=DagsterRunStatus.STARTED, tags=RENDER_KIND)
    busy = create_run_for_test(instance, job_name="render_uploads", status=DagsterRunStatus.STARTING,
                               tags={**RENDER_KIND, "dagster/partition": "waiting/a.png"})
    rows = {}
    with database.transaction() as conn:
        assets = [insert_asset(conn, f"uploads/reap-{i}/a.png") for i in range(7)]
        waiting_asset = insert_asset(conn, "uploads/waiting/a.png")

        def add(group, asset, status, age, run_id=None, attempt=1, n=4):
            rows.setdefault(group, []).extend(
                insert_render(conn, asset, STYLES[i], status, age=age, run_id=run_id, attempt=attempt)
                for i in range(n))

        two_hours = timedelta(hours=2)
        add("run_succeeded", assets[0], "started", two_hours, ok.run_id)
        add("run_failed", assets[1], "started", two_hours, failed.run_id, n=2)
        add("run_missing", assets[6], "started", two_hours, "no-such-run", n=2)
        add("run_hung", assets[2], "started", two_hours, hung.run_id)
        add("fresh", assets[3], "started", timedelta(minutes=20), hung.run_id)
        add("queued_lost", assets[4], "queued", timedelta(hours=7), attempt=1)
        add("queued_given_up", assets[5], "queued", timedelta(hours=7), attempt=3)
        add("queued_waiting", waiting_asset, "queued", timedelta(hours=7))
        # requeued three times already, never started by a run
        conn.execute("""UPDATE renders SET metadata = '{"requeues": 3}' WHERE id = ANY(%s)""",
                     (rows["queued_given_up"],))
    return rows, hung, busy


def _status_of(database, ids):
    with database.connection() as conn:
        return conn.execute("SELECT id, status, error_message, attempt, metadata FROM renders WHERE id = ANY(%s)",
                            (ids,)).fetchall()


def test_reaper_fails_stale_started_and_requeues_lost_queued(database, instance):
    rows, hung, busy = _seed(database, instance)
    result = stale_render_reaper_job.execute_in_process(
        resources={"database": database}, instance=instance)
    assert result.success
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    report = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert report["stale_started"] == 12 and report["started_failed"] == 12
    assert (report["runs_finished"], report["runs_missing"], report["runs_canceled"]) == (2, 1, 1)
    assert report["stale_queued"] == 12
    assert (report["queued_requeued"], report["queued_failed"], report["queued_waiting_for_run"]) == (4, 4, 4)

    for group, fragment in [("run_succeeded", "ended SUCCESS"), ("run_failed", "ended FAILURE"),
                            ("run_missing", "(no-such-run) does not exist"), ("run_hung", "canceled by the reaper")]:
        found = _status_of(database, rows[group])
        assert {r["status"] for r in found} == {"failed"}, group
        assert all(fragment in r["error_message"] for r in found), group
    assert instance.get_run_by_id(hung.run_id).status == DagsterRunStatus.CANCELED
    assert instance.get_run_by_id(busy.run_id).status == DagsterRunStatus.STARTING

    assert {r["status"] for r in _status_of(database, rows["fresh"])} == {"started"}
    lost = _status_of(database, rows["queued_lost"])
    # A requeue is not an attempt (no run started the render): the requeues are counted apart.
    assert {(r["status"], r["attempt"], r["metadata"]["requeues"]) for r in lost} == {("queued", 1, 1)}
    assert all("requeued_at" in r["metadata"] for r in lost)  # the requeue sensor's contract
    assert {r["status"] for r in _status_of(database, rows["queued_given_up"])} == {"failed"}
    assert {r["status"] for r in _status_of(database, rows["queued_waiting"])} == {"queued"}

    again = reap_stale_renders(database, instance, ReaperConfig(), LOG)
    assert again.started_failed == again.queued_requeued == again.queued_failed == 0


def test_dry_run_counts_without_touching_rows_or_runs(database, instance):
    rows, hung, _ = _seed(database, instance)
    before = snapshot(database)
    report = reap_stale_renders(database, instance, ReaperConfig(dry_run=True), LOG)
    assert report.stale_started == 12 and report.started_failed == 0
    assert (report.queued_requeued, report.queued_failed) == (4, 4)
    assert snapshot(database) == before
    assert instance.get_run_by_id(hung.run_id).status == DagsterRunStatus.STARTED


def test_alive_runs_can_be_left_to_run_monitoring(database, instance):
    rows, hung, _ = _seed(database, instance)
    report = reap_stale_renders(database, instance, ReaperConfig(cancel_overdue_runs=False), LOG)
    assert report.left_to_run_monitoring == 4 and report.started_failed == 8
    assert {r["status"] for r in _status_of(database, rows["run_hung"])} == {"started"}
    assert instance.get_run_by_id(hung.run_id).status == DagsterRunStatus.STARTED


def test_out_of_range_limit_is_rejected(database, instance):
    result = stale_render_reaper_job.execute_in_process(
        run_config={"ops": {"stale_render_reaper": {"config": {"started_limit_minutes": 1}}}},
        resources={"database": database}, instance=instance, raise_on_error=False)
    [failure] = result.get_step_failure_events()
    assert "started_limit_minutes must be between 5 and 10080 minutes (got 1)" in failure.event_specific_data.error.message


def test_overdue_runs_whose_code_server_is_gone_are_ended_without_blocking(database, instance):
    """Both runs name a code server that is gone (nothing listens on its port).  The one whose
    worker died is failed directly (no request to the code server); the one whose worker lives
    is canceled through the launcher, whose request fails, and then marked canceled directly."""
    gone = json.dumps({"host": "127.0.0.1", "port": free_port()})
    dead, alive = (create_run_for_test(instance, job_name="render_uploads", status=DagsterRunStatus.STARTED,
                                       tags={**RENDER_KIND, GRPC_INFO_TAG: gone}) for _ in range(2))
    instance.report_engine_event("Started process for run.", dead, EngineEventData.in_process(dead_pid()))
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        instance.report_engine_event("Started process for run.", alive, EngineEventData.in_process(worker.pid))
        with database.transaction() as conn:
            ids = {run.run_id: insert_render(conn, insert_asset(conn, f"uploads/{name}/a.png"), STYLES[0], "started",
                                             age=timedelta(hours=2), run_id=run.run_id)
                   for name, run in (("dead", dead), ("alive", alive))}
        started = time.monotonic()
        report = reap_stale_renders(database, instance, ReaperConfig(), LOG)
        elapsed = time.monotonic() - started
    finally:
        worker.kill()
        worker.wait()
    assert (report.runs_failed_worker_died, report.runs_canceled, report.started_failed) == (1, 1, 2)
    assert instance.get_run_by_id(dead.run_id).status == DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(alive.run_id).status == DagsterRunStatus.CANCELED
    [dead_row] = _status_of(database, [ids[dead.run_id]])
    assert "run worker died" in dead_row["error_message"] and dead.run_id in dead_row["error_message"]
    assert elapsed < 20, elapsed  # Dagster's gRPC timeout is 60 s

