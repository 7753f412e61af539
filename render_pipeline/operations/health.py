"""What `doctor` judges beyond the infrastructure: live daemons, live run workers, and the
pipeline's own backlog, each with a count and the command that fixes it."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.launcher import DefaultRunLauncher

from render_pipeline.store.health import PipelineCounts
from render_pipeline.store.uploads import REREQUEST_AFTER_SECONDS

START_TIME_SLACK_SECONDS = 2.0  # the boot time in /proc/stat is whole seconds
HEARTBEAT_TOLERANCE_SECONDS = 60.0  # Dagster's own default is 30 minutes: far too late for an operator
# Dagster's scheduler sleeps until the next minute between iterations and beats only then
# (measured gaps up to ~80 s): it gets this much more.
DAEMON_SLACK_SECONDS = {"SCHEDULER": 60.0}
STARTED_LIMIT = timedelta(minutes=60)  # the reaper's defaults (maintenance/reaper.py)
QUEUED_LIMIT = timedelta(minutes=360)
REGISTERED_LIMIT = timedelta(seconds=2 * REREQUEST_AFTER_SECONDS)
FAILURE_RATE_WARN = 0.05
FAILURE_RATE_FAIL = 0.5
REAPER_FIX = "launch stale_render_reaper_job from the UI (Jobs), or wait for its 15-minute schedule"


@dataclass(frozen=True)
class Finding:
    status: str  # "ok", "warn" or "fail"
    detail: str


def stale_daemons(instance: DagsterInstance, tolerance: float, now: float | None = None) -> dict[str, float | None]:
    """Required daemon types whose last heartbeat is older than ``tolerance`` seconds (age in
    seconds, or None when one never beat)."""
    now = time.time() if now is None else now
    heartbeats = instance.get_daemon_heartbeats()
    stale: dict[str, float | None] = {}
    for daemon_type in instance.get_required_daemon_types():
        beat = heartbeats.get(daemon_type)
        if beat is None:
            stale[daemon_type] = None
        elif now - beat.timestamp > tolerance + DAEMON_SLACK_SECONDS.get(daemon_type, 0.0):
            stale[daemon_type] = now - beat.timestamp
    return stale


def dead_worker_runs(
    instance: DagsterInstance, statuses: Sequence[DagsterRunStatus] = (DagsterRunStatus.STARTED,)
) -> list[tuple[str, int]]:
    """Runs Dagster calls STARTED (or any of ``statuses``) whose worker process on this machine
    is gone: (run id, pid).  A run whose worker has not reported its pid yet is not judged.

    Only the default launcher runs workers as local processes; for others this finds nothing.
    """
    if not isinstance(instance.run_launcher, DefaultRunLauncher):
        return []
    dead = []
    for record in instance.get_run_records(RunsFilter(statuses=list(statuses))):
        worker = worker_process(instance, record.dagster_run.run_id)
        if worker is not None and not worker_alive(*worker):
            dead.append((record.dagster_run.run_id, worker[0]))
    return dead


def worker_process(instance: DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, when it reported) from the run worker's "Started process for run (pid: N)"."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        value = data.metadata.get("pid") if data is not None else None
        if value is not None:
            return int(value.value), entry.timestamp
    return None


def worker_alive(pid: int, reported_at: float) -> bool:
    """Whether ``pid`` is still the process that reported itself as a run's worker at
    ``reported_at``: it exists, is no zombie, and started before it reported (a recycled pid
    started later).  The launcher's workers are multiprocessing children of the code server,
    so their command line does not say what they are.  Without /proc, existence decides."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration, IndexError, ValueError):
        return True
    started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return fields[0] != "Z" and started <= reported_at + START_TIME_SLACK_SECONDS


def judge_pipeline(counts: PipelineCounts, dead_runs: list[tuple[str, int]]) -> list[tuple[str, Finding]]:
    """One finding per concern, named; OK findings say what was counted."""
    findings = []
    if dead_runs:
        ids = ", ".join(run_id[:8] for run_id, _pid in dead_runs)
        findings.append(("dead_runs", Finding("fail", f"{len(dead_runs)} run(s) STARTED with no live worker ({ids}) "
                                                      f"hold run slots: dead_run_sensor fails them within a minute — if they stay, "
                                                      f"check that the daemon runs and dead_run_sensor is on (Automation), "
                                                      f"or terminate them in the UI (Runs)")))
    else:
        findings.append(("dead_runs", Finding("ok", "every STARTED run has a live worker")))
    stuck = []
    if counts.stale_started:
        stuck.append(f"{counts.stale_started} render(s) `started` over {_minutes(STARTED_LIMIT)}")
    if counts.stale_queued:
        stuck.append(f"{counts.stale_queued} render(s) `queued` over {_minutes(QUEUED_LIMIT)}")
    findings.append(("stuck_renders", Finding("fail", "; ".join(stuck) + f": {REAPER_FIX}") if stuck else
                     Finding("ok", f"none past their limits; {counts.queued} render(s) queued")))
    if counts.stuck_uploads:
        findings.append(("stuck_uploads", Finding(
            "warn", f"{counts.stuck_uploads} upload(s) still `registered` over {_minutes(REGISTERED_LIMIT)} after "
                    f"their run was requested: check uploads_sensor's ticks (Automation) and the runs that failed "
                    f"(`render-pipeline requeue --all-failed --dry-run`)")))
    else:
        findings.append(("stuck_uploads", Finding("ok", "no upload waits past the re-request window")))
    findings.append(("failure_rate", _failure_rate(counts)))
    return findings


def _failure_rate(counts: PipelineCounts) -> Finding:
    total = counts.failed_last_hour + counts.completed_last_hour
    rate = counts.failed_last_hour / total if total else 0.0
    detail = f"{counts.failed_last_hour} of {total} render(s) failed in the last hour ({rate:.0%})"
    if rate >= FAILURE_RATE_WARN:
        fix = "group them with `render-pipeline requeue --since 1h --all-failed --dry-run`, then requeue"
        return Finding("fail" if rate >= FAILURE_RATE_FAIL else "warn", f"{detail}: {fix}")
    return Finding("ok", detail)


def _minutes(limit: timedelta) -> str:
    return f"{limit.total_seconds() / 60:.0f} min"
