"""`render-pipeline up` keeps the stack up and takes all of it down, drilled on one live stack
(one start for every drill): a killed daemon is restarted and the next upload is rendered; a
hung daemon is found by its heartbeats and restarted; SIGTERM stops the daemon, the runs in
progress (marked failed), the web UI and the database, in that order, within the stated time,
leaving no process behind."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterRunStatus

from render_pipeline.resources.embedded_postgres import embedded_server, embedded_server_running, stop_embedded_server
from render_pipeline.stack import read_record
from render_pipeline_tests.imaging.inputs import png
from render_pipeline_tests.live_stack import LiveStack
from render_pipeline_tests.processes import process_group

pytestmark = pytest.mark.reliability
HANG_SECONDS = 40  # the smallest sound limit is a little over the daemon's 30 s heartbeat interval
RUN_GRACE = 1
SHUTDOWN_LIMIT = RUN_GRACE + 40  # what up.py promises
STACK_ENV = {"RENDER_DEFAULT_PRESETS": "square-1024", "RENDER_DEFAULT_STYLES": "duotone",
             "RENDER_DAEMON_HANG_SECONDS": str(HANG_SECONDS)}


def test_up_restarts_a_killed_or_hung_daemon_and_stops_everything_it_started(tmp_path):
    with LiveStack(tmp_path / "home", env=STACK_ENV, up_args=["--run-grace", str(RUN_GRACE)]) as stack:
        first_worker = _killed_daemon_is_restarted(stack)
        held_worker = _a_run_held_in_progress(stack, first_worker)
        _hung_daemon_is_restarted(stack)
        stack.wait_until(lambda: _status(stack, "uploads/after-kill/a.png") == ["completed"], 120,
                         "the upload sent after the kill to be rendered")
        _sigterm_stops_everything_in_order(stack, held_worker)


def _killed_daemon_is_restarted(stack: LiveStack) -> int:
    """SIGKILL the daemon: a new one starts, the old one's gRPC server goes, and an upload sent
    after the kill gets its run (returns that run's worker)."""
    daemon = _child(stack, "daemon")
    assert process_group(daemon), "the daemon's group holds its gRPC server"
    os.kill(daemon, signal.SIGKILL)
    restarted = stack.wait_until(lambda: _child(stack, "daemon") not in (None, daemon) and _child(stack, "daemon"),
                                 30, "a new daemon")
    assert f"daemon (pid {daemon}) was killed by SIGKILL: restarting it in 1 s (restart 1)" in stack.log_tail(400)
    stack.wait_until(lambda: not process_group(daemon), 15, "the killed daemon's gRPC server to be stopped")
    stack.put_upload("uploads/after-kill/a.png", png(64, 48, seed=1))
    worker = stack.wait_until(lambda: _run_worker(stack), 120, "the run of the upload sent after the kill")
    assert worker in process_group(restarted)
    return worker


def _a_run_held_in_progress(stack: LiveStack, other_worker: int) -> int:
    """A second run whose worker is stopped: still in progress whenever `up` is asked to stop."""
    stack.put_upload("uploads/interrupted/a.png", png(64, 48, seed=2))
    worker = stack.wait_until(lambda: _run_worker(stack, besides=other_worker), 120, "a second run worker")
    os.kill(worker, signal.SIGSTOP)
    return worker


def _hung_daemon_is_restarted(stack: LiveStack) -> None:
    """SIGSTOP the daemon (alive, no heartbeats): killed and restarted once its newest heartbeat
    is older than the limit; its group is left to finish the runs it holds."""
    daemon = _child(stack, "daemon")
    os.kill(daemon, signal.SIGSTOP)
    stack.wait_until(lambda: _child(stack, "daemon") != daemon, HANG_SECONDS + 45, "the hung daemon's restart")
    log = stack.log_tail(400)
    found = re.search(rf"daemon \(pid {daemon}\) is hung: no heartbeat for (\d+) s \(limit {HANG_SECONDS} s\): "
                      rf"restarting it in \d+ s", log)
    assert found and HANG_SECONDS <= int(found[1]) < HANG_SECONDS + 15, log  # the age is printed rounded
    assert f"daemon's run workers (group {daemon}) go on" in log
    assert not _alive(daemon) and process_group(daemon)  # the hung process is gone, its runs' processes are not


def _sigterm_stops_everything_in_order(stack: LiveStack, held_worker: int) -> None:
    up = stack.process
    started = time.monotonic()
    up.send_signal(signal.SIGTERM)
    up.wait(SHUTDOWN_LIMIT + 30)
    elapsed = time.monotonic() - started
    left = stack.processes()
    assert elapsed < SHUTDOWN_LIMIT, f"stopped in {elapsed:.1f} s"
    assert left == [], [Path(f"/proc/{pid}/cmdline").read_bytes()[:120] for pid in left]
    assert not _alive(held_worker) and not embedded_server_running(stack.home)
    assert up.returncode == 0 and read_record(stack.home) is None

    log = stack.log_tail(400)
    order = ["SIGTERM: stopping", "daemon stopped (no new runs start)", "stopping 1 run worker(s) still running",
             "marked failed: run worker stopped", "web UI stopped", "embedded PostgreSQL stopped"]
    positions = [log.find(line) for line in order]
    assert -1 not in positions and positions == sorted(positions), log
    run_id = re.search(r"run ([0-9a-f-]{36}) marked failed", log)[1]
    embedded_server(stack.home)  # the run as the next start finds it
    try:
        with stack.dagster_instance() as instance:
            assert instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE
            failures = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
            assert [event.message for event in failures] == [
                "run worker stopped: `render-pipeline up` shut down before the run finished"]
        assert _status(stack, "uploads/interrupted/a.png") != ["completed"]
    finally:
        stop_embedded_server(stack.home)
    print(f"up stopped in {elapsed:.1f} s")


def _child(stack: LiveStack, name: str) -> int | None:
    record = read_record(stack.home)
    return record.children.get(name) if record is not None else None


def _status(stack: LiveStack, key: str) -> list[str]:
    return [row["status"] for row in stack.query(
        "SELECT r.status FROM renders r JOIN assets a ON a.id = r.asset_id WHERE a.object_key = %s", (key,))]


def _run_worker(stack: LiveStack, besides: int | None = None) -> int | None:
    for pid in stack.processes():
        if pid == besides:
            continue
        try:
            if b"--multiprocessing-fork" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"
