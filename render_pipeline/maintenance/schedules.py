"""Schedules for the maintenance jobs (UTC, on by default).

A schedule skips its tick while a run of the same job is still queued or running, so a slow
run (a first retention pass over years of renders) is never joined by a second one.
"""

from __future__ import annotations

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from render_pipeline.maintenance.common import ALIVE_RUN_STATUSES
from render_pipeline.maintenance.jobs import (
    dagster_history_retention_job,
    orphan_reconciliation_job,
    retention_cleanup_job,
    stale_render_reaper_job,
    storage_usage_job,
)


def _maintenance_schedule(job, cron: str, name: str):
    @schedule(name=name, job=job, cron_schedule=cron, execution_timezone="UTC",
              default_status=DefaultScheduleStatus.RUNNING, description=f"Runs {job.name} ({cron} UTC).")
    def _schedule(context: ScheduleEvaluationContext):
        busy = context.instance.get_runs_count(RunsFilter(job_name=job.name, statuses=list(ALIVE_RUN_STATUSES)))
        if busy:
            return SkipReason(f"{job.name} is still running ({busy} run(s) in flight)")
        return RunRequest()

    return _schedule


retention_cleanup_schedule = _maintenance_schedule(retention_cleanup_job, "30 3 * * *", "retention_cleanup_daily")
orphan_reconciliation_schedule = _maintenance_schedule(
    orphan_reconciliation_job, "30 4 * * *", "orphan_reconciliation_daily")
stale_render_reaper_schedule = _maintenance_schedule(
    stale_render_reaper_job, "*/15 * * * *", "stale_render_reaper_every_15_minutes")
dagster_history_retention_schedule = _maintenance_schedule(
    dagster_history_retention_job, "30 5 * * *", "dagster_history_retention_daily")
storage_usage_schedule = _maintenance_schedule(storage_usage_job, "5 * * * *", "storage_usage_hourly")

SCHEDULES: list = [
    retention_cleanup_schedule,
    orphan_reconciliation_schedule,
    stale_render_reaper_schedule,
    dagster_history_retention_schedule,
    storage_usage_schedule,
]
