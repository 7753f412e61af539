"""A run left STARTING when the daemon's process group is killed mid-launch — its worker
reported a pid and is gone, or never reported one and the code server launching it is gone —
is failed by `dead_run_sensor`'s next evaluation, not 180 s later by run monitoring's start
timeout; a run whose code server still listens is left alone.  (The live drill: test_live_faults.py, the daemon's group killed.)"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterRunStatus, MetadataValue, job, op
from dagster._core.events import EngineEventData

from render_pipeline.maintenance.dead_runs import GRPC_INFO_TAG, NEVER_STARTED, end_dead_runs, worker_died_message

pytestmark = pytest.mark.reliability


@op
def nothing() -> None:
    pass


@job
def launched_job() -> None:
    nothing()


def _starting_run(instance, socket_path: Path) -> str:
    tags = {GRPC_INFO_TAG: json.dumps({"host": "localhost", "socket": str(socket_path)})}
    return instance.create_run_for_job(launched_job, tags=tags, status=DagsterRunStatus.STARTING).run_id


def test_starting_runs_whose_worker_or_code_server_is_gone_are_failed_and_one_being_launched_is_not(
    instance, tmp_path
):
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(tmp_path / "live.sock"))
    listening.listen()
    killed = socket.socket(socket.AF_UNIX)
    killed.bind(str(tmp_path / "killed.sock"))
    killed.close()  # the socket file stays, as after a SIGKILL: connections are refused
    try:
        alive = _starting_run(instance, tmp_path / "live.sock")
        refused = _starting_run(instance, tmp_path / "killed.sock")
        removed = _starting_run(instance, tmp_path / "removed.sock")
        spawned = _starting_run(instance, tmp_path / "live.sock")  # its worker reported, then died
        worker = subprocess.Popen(["true"])
        worker.wait()
        instance.report_engine_event(f"Started process for run (pid: {worker.pid}).", instance.get_run_by_id(spawned),
                                     EngineEventData(metadata={"pid": MetadataValue.int(worker.pid)}))
        report = end_dead_runs(instance, logging.getLogger("dead_run_sensor"))
    finally:
        listening.close()

    assert sorted(report.failed) == sorted([refused, removed, spawned])
    assert instance.get_run_by_id(alive).status == DagsterRunStatus.STARTING
    for run_id in (refused, removed):
        assert instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE
        [failure] = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
        assert failure.message == NEVER_STARTED
    [failure] = instance.all_logs(spawned, of_type=DagsterEventType.RUN_FAILURE)
    assert failure.message == worker_died_message(worker.pid)
