"""Scenarios 4 and 9: a run worker SIGKILLed mid-render, and the render pool's limit.

Runs execute in worker subprocesses against a PostgreSQL-backed instance (as the run launcher
runs them in production, each reporting its pid).  Worker A is killed while it holds the only
`render` pool slot and one of its objects is half-written; workers B and C wait for the slot.
The dead-run sensor's next tick finds A's pid gone, fails its run (B and C, alive, are left
alone) and frees its slot; B and C then complete; the run-failure sensor fails A's renders
with "run worker died" and the daemon's run retry completes them under the same keys.  At
no moment do two pool ops run at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from dagster import AssetKey, DagsterEventType, DagsterRunStatus, RunRequest, instance_for_test
from dagster_shared.serdes import serialize_value

from render_pipeline.render.events import render_asset_key
from render_pipeline.render.job import RENDER_RUN_TAGS
from render_pipeline.run_policies import RENDER_POOL
from render_pipeline_tests.orchestration_helpers import definitions_for, execute, jpeg_bytes, tick
from render_pipeline_tests.reliability.fault_proxy import wait_until
from render_pipeline_tests.reliability.harness import Pipeline, audit, list_keys, project_storage

pytestmark = pytest.mark.reliability

PRESETS = ("play-feature",)
POOL_LIMIT = 1
POOL_STEPS = ("_decode", "_preprocess", "_quantize", "_compose", "_preview")


@pytest.fixture
def patient_s3_env(s3_env, monkeypatch) -> dict[str, str]:
    """A read timeout longer than the test's holds: a held request stays in flight (it does not
    time out into a retry that would release the step's pool slot)."""
    monkeypatch.setenv("MINIO_READ_TIMEOUT", "90")
    return {**s3_env, "MINIO_READ_TIMEOUT": "90"}


@pytest.fixture
def limited_instance(pg_dagster_home):
    home, url = pg_dagster_home
    overrides = {
        **project_storage(url),
        "concurrency": {"pools": {"default_limit": POOL_LIMIT}},
        "run_monitoring": {"enabled": True, "free_slots_after_run_end_seconds": 1},
    }
    with instance_for_test(overrides=overrides, temp_dir=home) as instance:
        yield instance


def _spawn(tmp_path, request: RunRequest, name: str) -> subprocess.Popen:
    path = tmp_path / f"{name}.request"
    path.write_text(serialize_value(request), encoding="utf-8")
    log = open(tmp_path / f"{name}.log", "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "render_pipeline_tests.reliability.worker", str(path)],
        stdout=subprocess.PIPE, stderr=log, env=dict(os.environ), cwd=os.getcwd(),
    )


def _run_of(instance, request: RunRequest):
    from dagster import RunsFilter

    runs = instance.get_runs(filters=RunsFilter(tags={"dagster/run_key": request.run_key}), limit=1)
    return runs[0] if runs else None


def _pool_step_intervals(instance, run_ids) -> list[tuple[float, float, str]]:
    intervals = []
    for run_id in run_ids:
        starts: dict[str, float] = {}
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            if event is None or not event.step_key or not event.step_key.endswith(POOL_STEPS):
                continue
            if event.event_type == DagsterEventType.STEP_START:
                starts[event.step_key] = entry.timestamp
            elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE,
                                      DagsterEventType.STEP_UP_FOR_RETRY) and event.step_key in starts:
                intervals.append((starts.pop(event.step_key), entry.timestamp, f"{run_id[:8]}:{event.step_key}"))
        for step_key, started in starts.items():  # never finished: the worker died holding it
            intervals.append((started, float("inf"), f"{run_id[:8]}:{step_key} (killed)"))
    return intervals


def _max_overlap(intervals) -> int:
    points = sorted([(s, 1) for s, _, _ in intervals] + [(e, -1) for _, e, _ in intervals], key=lambda p: (p[0], p[1]))
    current = peak = 0
    for _, delta in points:
        current += delta
        peak = max(peak, current)
    return peak


def _dead_run_tick(defs, instance) -> float:
    """One evaluation of dead_run_sensor, as the daemon makes every 30 s; its duration."""
    started = time.perf_counter()
    tick(defs, instance, "dead_run_sensor")
    return time.perf_counter() - started


def test_a_killed_worker_is_detected_its_slot_freed_and_its_renders_retried(
    patient_s3_env, proxy, boto, s3_bucket, database, limited_instance, tmp_path
):
    instance = limited_instance
    defs = definitions_for(patient_s3_env, presets=PRESETS)
    pipeline = Pipeline(defs, instance)
    boto.put_object(Bucket=s3_bucket, Key="uploads/a1/p.jpg", Body=jpeg_bytes(64, 48, seed=51))
    [request_a] = pipeline.tick()

    # A's render PUTs after the first hang (its first output.png is written): A is mid-render.
    # Every later PUT hangs, so botocore's retries after its read timeout hang too.
    hold = threading.Event()
    held = proxy.add(action="pass", ops=("put",), key_prefix="renders/", skip=1,
                     before=lambda _r: hold.wait(80))
    worker_a = _spawn(tmp_path, request_a, "a")
    try:
        wait_until(lambda: held.matched >= 2, timeout=120, what="worker A to reach its preview PUT")
        run_a = _run_of(instance, request_a)
        with database.connection() as conn:
            statuses = [r["status"] for r in conn.execute("SELECT status FROM renders").fetchall()]
        assert statuses == ["started"], statuses
        # While A lives, the sensor leaves it alone (and costs little).
        idle_tick = _dead_run_tick(defs, instance)
        assert instance.get_run_by_id(run_a.run_id).status == DagsterRunStatus.STARTED

        boto.put_object(Bucket=s3_bucket, Key="uploads/b1/p.jpg", Body=jpeg_bytes(64, 48, seed=99))
        os.kill(worker_a.pid, signal.SIGKILL)
        worker_a.wait(30)
    finally:
        hold.set()
        if worker_a.poll() is None:
            worker_a.kill()
    assert worker_a.returncode == -signal.SIGKILL
    assert instance.get_run_by_id(run_a.run_id).status == DagsterRunStatus.STARTED  # nothing noticed yet

    # The sensor's next tick (≤ 30 s later under the daemon): A failed, its run slot free.
    detecting_tick = _dead_run_tick(defs, instance)
    run_a = instance.get_run_by_id(run_a.run_id)
    assert run_a.status == DagsterRunStatus.FAILURE
    [failure] = instance.get_records_for_run(run_a.run_id, of_type=DagsterEventType.RUN_FAILURE).records
    assert failure.event_log_entry.dagster_event.message.startswith("run worker died: its process (pid ")

    # The run-failure sensor fails A's render with the reason; the daemon's run retry renders
    # it again (and a new upload is rendered meanwhile): everything converges under the same keys.
    pipeline.notify_failure(run_a.run_id)
    with database.connection() as conn:
        [row] = conn.execute("SELECT status, error_message FROM renders").fetchall()
    assert row["status"] == "failed" and row["error_message"].startswith("unfinished: run failed: run worker died")
    retry = pipeline.retry(run_a.run_id)
    assert retry is not None and retry.success
    assert all(o.success for o in pipeline.launch(pipeline.tick()))
    result = audit(database, list_keys(boto, s3_bucket, ""), styles=("duotone",), presets=PRESETS)
    assert not result.problems, result.problems
    assert result.renders == {"completed": 2} and result.render_objects == 4
    with database.connection() as conn:
        attempts = {r["attempt"] for r in conn.execute("SELECT attempt FROM renders").fetchall()}
    assert attempts == {1, 2}  # A's render: the dead run, then its retry
    assert idle_tick < 5, idle_tick
    print(f"dead_run_sensor: {idle_tick:.2f} s with A alive, {detecting_tick:.2f} s failing A")
    assert defs.resolve_sensor_def("dead_run_sensor").minimum_interval_seconds <= 60


def test_render_pool_limit_holds_and_a_crashed_runs_slot_is_freed(
    patient_s3_env, proxy, boto, s3_bucket, database, limited_instance, tmp_path
):
    instance = limited_instance
    defs = definitions_for(patient_s3_env, presets=PRESETS)
    pipeline = Pipeline(defs, instance)
    requests = _validated_render_requests(pipeline, defs, instance, boto, s3_bucket, ("c1", "c2", "c3"))

    hold_a = threading.Event()
    # Decode GETs (after validation's): every one of A's hangs (botocore's retries too) while it
    # holds the slot; the others are slowed 1 s so that, without the limit, pool ops would overlap.
    a_in_decode = proxy.add(action="pass", ops=("get",), key_prefix="uploads/c1/", before=lambda _r: hold_a.wait(80))
    for name in ("c2", "c3"):
        proxy.add(action="pass", ops=("get",), key_prefix=f"uploads/{name}/", nth=1, before=lambda _r: time.sleep(1))

    def decode_gets(name: str) -> int:
        return len(proxy.requests(op="get", key_prefix=f"uploads/{name}/"))
    workers = {"a": _spawn(tmp_path, requests[0], "a")}
    try:
        wait_until(lambda: a_in_decode.fired, timeout=120, what="run A to hold the slot in decode")
        workers["b"] = _spawn(tmp_path, requests[1], "b")
        workers["c"] = _spawn(tmp_path, requests[2], "c")
        # B and C start, then wait for the slot A holds.
        wait_until(lambda: all((run := _run_of(instance, r)) and run.status == DagsterRunStatus.STARTED
                               for r in requests[1:]), timeout=120, what="runs B and C to start")
        time.sleep(3)
        info = instance.event_log_storage.get_concurrency_info(RENDER_POOL)
        assert decode_gets("c2") == 1 and decode_gets("c3") == 1, (
            "B or C decoded while A held the only slot", info, [(e.request.op, e.request.key, e.outcome) for e in proxy.log])
        run_a = _run_of(instance, requests[0])
        assert info.slot_count == POOL_LIMIT and [c.run_id for c in info.claimed_slots] == [run_a.run_id]

        os.kill(workers["a"].pid, signal.SIGKILL)
        workers["a"].wait(30)
        hold_a.set()
        time.sleep(3)
        # The dead run still holds the slot: nothing else may run a pool op yet.
        assert decode_gets("c2") == 1 and decode_gets("c3") == 1

        # Detection: the dead-run sensor fails A (B and C live on) and frees its slot at once.
        _dead_run_tick(defs, instance)
        assert instance.get_run_by_id(run_a.run_id).status == DagsterRunStatus.FAILURE
        assert all(_run_of(instance, r).status == DagsterRunStatus.STARTED for r in requests[1:])
        freed_at = time.time()

        results = {name: _worker_result(workers[name]) for name in ("b", "c")}
        assert all(r["success"] for r in results.values()), results
    finally:
        hold_a.set()
        for process in workers.values():
            if process.poll() is None:
                process.kill()

    _assert_pool_steps_serialised(instance, run_a.run_id, [results["b"]["run_id"], results["c"]["run_id"]], freed_at)

    pipeline.notify_failure(run_a.run_id)
    retry = pipeline.retry(run_a.run_id)
    assert retry is not None and retry.success
    result = audit(database, list_keys(boto, s3_bucket, ""), styles=("duotone",), presets=PRESETS)
    assert not result.problems and result.renders == {"completed": 3}, result.summary()


def _worker_result(worker) -> dict:
    """The result line a worker process prints last, once it has exited."""
    out, _ = worker.communicate(timeout=180)
    return json.loads(out.decode().strip().splitlines()[-1])


def _validated_render_requests(pipeline, defs, instance, boto, s3_bucket, names) -> list[RunRequest]:
    """One upload per name, validated here; the requests then render only, as a requeue does,
    so their decode fetches the object (a full run decodes the bytes its validation kept) and
    a held GET holds a run inside its pool step."""
    requests = []
    for name in names:
        boto.put_object(Bucket=s3_bucket, Key=f"uploads/{name}/p.jpg", Body=jpeg_bytes(64, 48, seed=ord(name[1])))
        [validate] = pipeline.tick()
        assert execute(defs, instance, validate.with_replaced_attrs(asset_selection=[AssetKey("uploads")])).success
        requests.append(RunRequest(run_key=f"render-{name}", partition_key=f"{name}/p.jpg",
                                   asset_selection=[render_asset_key("duotone")], tags=RENDER_RUN_TAGS))
    return requests


def _assert_pool_steps_serialised(instance, crashed_run_id: str, run_ids: list[str], freed_at: float) -> None:
    """No more pool steps at once than the limit (the crashed run's until its slot was freed),
    while the surviving runs themselves overlapped: the limit, not luck, serialised them."""
    intervals = [(s, min(e, freed_at), label)
                 for s, e, label in _pool_step_intervals(instance, [crashed_run_id, *run_ids])]
    assert len(intervals) >= 11  # the crashed run's decode + five pool steps of each other run
    assert _max_overlap(intervals) <= POOL_LIMIT, sorted(intervals)
    b, c = (instance.get_run_record_by_id(run_id) for run_id in run_ids)
    assert max(b.start_time, c.start_time) < min(b.end_time, c.end_time)
    assert instance.event_log_storage.get_concurrency_info(RENDER_POOL).claimed_slots == []
