"""Runs whose worker died: the dead-run sensor ends them, and the failure sensor says
"run worker died" whichever part of Dagster noticed first."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

from dagster import DagsterRunStatus
from dagster._core.events import EngineEventData
from dagster._core.test_utils import create_run_for_test
from dagster._grpc.server import DagsterApiServer
from dagster._utils import get_run_crash_explanation

from render_pipeline.maintenance.common import RENDER_KIND
from render_pipeline.operations.health import worker_alive
from render_pipeline_tests.maintenance.scenario import STYLES, insert_asset, insert_render
from render_pipeline_tests.orchestration_helpers import definitions_for, tick
from render_pipeline_tests.processes import dead_pid
from render_pipeline_tests.reliability.harness import Pipeline


def _run_with_worker(instance, status: DagsterRunStatus, pid: int):
    run = create_run_for_test(instance, job_name="render_uploads", status=status, tags=RENDER_KIND)
    instance.report_engine_event(f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid))
    return run


def _defs(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    return definitions_for({"DATABASE_URL": database_url, "LOCAL_STORE_ROOT": str(tmp_path / "objects")})


def test_the_sensor_ends_runs_whose_worker_is_gone_and_leaves_live_ones(
    database, database_url, instance, tmp_path, monkeypatch
):
    defs = _defs(database_url, tmp_path, monkeypatch)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = _run_with_worker(instance, DagsterRunStatus.STARTED, worker.pid)
        assert tick(defs, instance, "dead_run_sensor").skip_reason.skip_message == "every STARTED run has a live worker"
        dead = _run_with_worker(instance, DagsterRunStatus.STARTED, dead_pid())
        canceling = _run_with_worker(instance, DagsterRunStatus.CANCELING, dead_pid())
        tick(defs, instance, "dead_run_sensor")
    finally:
        worker.kill()
        worker.wait()
    assert instance.get_run_by_id(alive.run_id).status == DagsterRunStatus.STARTED
    assert instance.get_run_by_id(dead.run_id).status == DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(canceling.run_id).status == DagsterRunStatus.CANCELED


def test_a_worker_its_code_server_saw_die_is_named_in_the_renders_reason(
    database, database_url, instance, tmp_path, monkeypatch
):
    defs = _defs(database_url, tmp_path, monkeypatch)
    run = create_run_for_test(instance, job_name="render_uploads", status=DagsterRunStatus.STARTED, tags=RENDER_KIND)
    with database.transaction() as conn:
        render_id = insert_render(conn, insert_asset(conn, "uploads/w/a.png"), STYLES[0], "started",
                                  age=timedelta(minutes=1), run_id=run.run_id)
    # What Dagster's code server does when the worker it launched is SIGKILLed.
    instance.report_engine_event(get_run_crash_explanation(f"Run execution process for {run.run_id}", -9), run,
                                 cls=DagsterApiServer)
    instance.report_run_failed(run)
    Pipeline(defs, instance).notify_failure(run.run_id)
    with database.connection() as conn:
        row = conn.execute("SELECT status, error_message FROM renders WHERE id = %s", (render_id,)).fetchone()
    assert row["status"] == "failed"
    assert row["error_message"] == (f"unfinished: run failed: run worker died: its process was terminated by "
                                    f"signal 9 (SIGKILL) (run {run.run_id})"), row["error_message"]


def test_a_worker_is_its_pid_only_if_it_started_before_it_reported():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert worker_alive(process.pid, time.time() + 1)
        assert not worker_alive(process.pid, time.time() - 60)  # the pid was recycled since
    finally:
        process.kill()
        process.wait()
    assert not worker_alive(process.pid, time.time())
