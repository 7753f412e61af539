"""Runs whose worker process is gone: ended within a minute instead of holding a run slot.

The default run launcher starts each run worker as a local process and cannot tell Dagster's
run monitoring whether it still lives (`supports_check_run_worker_health` is False), so a
run whose worker was killed (OOM, SIGKILL, the daemon and its code server going down with
it) would stay STARTED — holding one of the run slots and its renders `started` — until the
stale-render reaper's hour-long limit.  `dead_run_sensor` looks every
``DEAD_RUN_INTERVAL_SECONDS`` for STARTED or CANCELING runs whose worker pid (from the
worker's own "Started process" event) is gone and ends them through the instance, never
through the code server (which may be gone too): a STARTED run is marked failed — the
run-failure sensor then fails its renders with the reason and the daemon's run retry renders
them again, skipping what was completed — and a CANCELING run is marked canceled.  Their
pool slots are freed at once.  (A code server that outlives its worker fails the run itself,
with Dagster's default message; the run-failure sensor then names the worker's exit from the
code server's engine event: ``worker_crash_reason``.)  Other launchers (Docker, Kubernetes) report worker health
to Dagster's run monitoring, which does the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from logging import Logger

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, DefaultSensorStatus, SensorEvaluationContext, SkipReason, sensor

from render_pipeline.operations.health import dead_worker_runs

WORKER_DIED = "run worker died"
DEAD_RUN_INTERVAL_SECONDS = 30
# What Dagster's code server reports when a worker it launched exits unfinished: an engine
# event with the exit, then a run failure with Dagster's default message.
CRASH_EVENT_PREFIX = "Run execution process for "
FAILED_FROM_OUTSIDE = "This run has been marked as failed from outside the execution context."


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


def end_run_of_dead_worker(instance: DagsterInstance, run_id: str, pid: int) -> DagsterRunStatus | None:
    """Fail (or, if it was being canceled, cancel) a run whose worker ``pid`` is gone, and free
    its pool slots; the status it ended in, or None if it had ended meanwhile."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.is_finished:
        return None
    message = worker_died_message(pid)
    if run.status == DagsterRunStatus.CANCELING:
        instance.report_run_canceled(run, message=message)
        ended = DagsterRunStatus.CANCELED
    else:
        instance.report_run_failed(run, message=message)
        ended = DagsterRunStatus.FAILURE
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    return ended


def end_dead_runs(instance: DagsterInstance, log: Logger) -> DeadRunReport:
    """End every STARTED or CANCELING run whose local worker process is gone."""
    report = DeadRunReport()
    for run_id, pid in dead_worker_runs(instance, (DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING)):
        ended = end_run_of_dead_worker(instance, run_id, pid)
        if ended == DagsterRunStatus.FAILURE:
            report.failed.append(run_id)
        elif ended == DagsterRunStatus.CANCELED:
            report.canceled.append(run_id)
        if ended is not None:
            log.warning(f"run {run_id}: {worker_died_message(pid)}; marked {ended.value}")
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
