"""Runs whose worker process is gone: ended within a minute instead of holding a run slot.

The default run launcher starts each run worker as a local process and cannot tell Dagster's
run monitoring whether it still lives (`supports_check_run_worker_health` is False), so a
run whose worker was killed (OOM, SIGKILL, the daemon and its code server going down with
it) would stay STARTED — holding one of the run slots and its renders `started` — until the
stale-render reaper's hour-long limit.  `dead_run_sensor` looks every
``DEAD_RUN_INTERVAL_SECONDS`` for STARTING, STARTED or CANCELING runs whose worker pid (from
the worker's own "Started process" event) is gone, and for STARTING runs whose worker never
reported a pid while the code server launching it is gone (its socket refuses connections:
the daemon's process group was killed mid-launch; run monitoring would wait out its 180 s start
timeout), and ends them through the instance, never through the code server (which may be
gone too): such a run is marked failed — the run-failure sensor then fails its renders with
the reason and the daemon's run retry renders them again, skipping what was completed — and a
CANCELING run is marked canceled.  Their pool slots are freed at once.  (A code server that
outlives its worker fails the run itself, with Dagster's default message; the run-failure
sensor then names the worker's exit from the code server's engine event:
``worker_crash_reason``.)  Other launchers (Docker, Kubernetes) report worker health to
Dagster's run monitoring, which does the same.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from logging import Logger

from dagster import (DagsterEventType, DagsterInstance, DagsterRunStatus, DefaultSensorStatus, RunsFilter,
                     SensorEvaluationContext, SkipReason, sensor)
from dagster._core.launcher import DefaultRunLauncher

from render_pipeline.operations.health import dead_worker_runs, worker_process

WORKER_DIED = "run worker died"
DEAD_RUN_INTERVAL_SECONDS = 30
# What Dagster's code server reports when a worker it launched exits unfinished: an engine
# event with the exit, then a run failure with Dagster's default message.
CRASH_EVENT_PREFIX = "Run execution process for "
FAILED_FROM_OUTSIDE = "This run has been marked as failed from outside the execution context."
NEVER_STARTED = "run worker never started: the code server launching it is gone"
GRPC_INFO_TAG = ".dagster/grpc_info"  # set on each run by Dagster's default run launcher


@dataclass
class DeadRunReport:
    failed: list[str] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)


def worker_died_message(pid: int) -> str:
    return f"{WORKER_DIED}: its process (pid {pid}) is gone"


def worker_crash_reason(instance: DagsterInstance, run_id: str) -> str | None:
    """"run worker died: its process was terminated by signal 9 (SIGKILL)" when the code
    server that launched the run saw its worker exit, else None."""
    prefix = f"{CRASH_EVENT_PREFIX}{run_id} "
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        message = entry.dagster_event.message if entry.dagster_event else None
        start = message.find(prefix) if message else -1  # after the reporter's "[DagsterApiServer] "
        if start >= 0:
            return f"{WORKER_DIED}: its process {message[start + len(prefix):].split('. ')[0].rstrip('.')}"
    return None


def launch_server_gone(tags: dict[str, str]) -> bool:
    """Whether the local code server that launched a run (the Unix socket in its grpc_info
    tag) no longer exists or accepts connections.  A server elsewhere, or one that does not
    answer in time, is not judged."""
    try:
        path = json.loads(tags.get(GRPC_INFO_TAG) or "{}").get("socket")
    except (ValueError, AttributeError):
        return False
    if not path:
        return False
    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(2)
        try:
            probe.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            return True
        except OSError:
            return False
    return False


def unlaunched_runs(instance: DagsterInstance) -> list[str]:
    """STARTING runs whose worker never reported its pid and whose launching server is gone."""
    if not isinstance(instance.run_launcher, DefaultRunLauncher):
        return []
    return [record.dagster_run.run_id for record in instance.get_run_records(RunsFilter(
        statuses=[DagsterRunStatus.STARTING])) if worker_process(instance, record.dagster_run.run_id) is None
        and launch_server_gone(record.dagster_run.tags)]


def end_run_of_dead_worker(instance: DagsterInstance, run_id: str, pid: int | None) -> DagsterRunStatus | None:
    """Fail (or, if it was being canceled, cancel) a run whose worker ``pid`` is gone (None:
    never started), and free its pool slots; the status it ended in, or None if it had ended
    meanwhile."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.is_finished:
        return None
    message = _dead_run_reason(pid)
    if run.status == DagsterRunStatus.CANCELING:
        instance.report_run_canceled(run, message=message)
        ended = DagsterRunStatus.CANCELED
    else:
        instance.report_run_failed(run, message=message)
        ended = DagsterRunStatus.FAILURE
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    return ended


def _dead_run_reason(pid: int | None) -> str:
    return worker_died_message(pid) if pid is not None else NEVER_STARTED


def end_dead_runs(instance: DagsterInstance, log: Logger) -> DeadRunReport:
    """End every STARTING, STARTED or CANCELING run whose local worker process is gone, and
    every STARTING run whose worker never started and never will."""
    report = DeadRunReport()
    dead = dead_worker_runs(instance, (DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING))
    for run_id, pid in [*dead, *((run_id, None) for run_id in unlaunched_runs(instance))]:
        ended = end_run_of_dead_worker(instance, run_id, pid)
        if ended == DagsterRunStatus.FAILURE:
            report.failed.append(run_id)
        elif ended == DagsterRunStatus.CANCELED:
            report.canceled.append(run_id)
        if ended is not None:
            log.warning(f"run {run_id}: {_dead_run_reason(pid)}; marked {ended.value}")
    return report


@sensor(
    name="dead_run_sensor",
    minimum_interval_seconds=DEAD_RUN_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description="Fails runs whose worker process died, so their run slot is freed and their renders are "
                "retried within a minute.",
)
def dead_run_sensor(context: SensorEvaluationContext) -> SkipReason:
    report = end_dead_runs(context.instance, context.log)
    if not report.failed and not report.canceled:
        return SkipReason("every STARTED run has a live worker")
    return SkipReason(f"ended {len(report.failed)} run(s) as failed and {len(report.canceled)} as canceled "
                      f"because their worker died")
