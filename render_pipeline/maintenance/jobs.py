"""Maintenance jobs: one op each, in-process, tagged so history retention can find their runs.

Each is launchable from the UI's launchpad with its config (dry runs included); the
schedules in `render_pipeline.maintenance.schedules` run them with the defaults.
"""

from __future__ import annotations

from dagster import AssetKey, define_asset_job, in_process_executor, job

from render_pipeline.maintenance.common import MAINTENANCE_KIND
from render_pipeline.maintenance.ops import (
    dagster_history_retention,
    orphan_reconciliation,
    retention_cleanup,
    stale_render_reaper,
)


@job(executor_def=in_process_executor, tags=MAINTENANCE_KIND,
     description="Delete the objects of completed renders past retention and archive them (daily).")
def retention_cleanup_job():
    retention_cleanup()


@job(executor_def=in_process_executor, tags=MAINTENANCE_KIND,
     description="Reconcile renders/ and uploads/ objects with the tables, both directions (daily).")
def orphan_reconciliation_job():
    orphan_reconciliation()


@job(executor_def=in_process_executor, tags=MAINTENANCE_KIND,
     description="Fail or requeue renders stuck `started`/`queued` with no live run (every 15 minutes).")
def stale_render_reaper_job():
    stale_render_reaper()


@job(executor_def=in_process_executor, tags=MAINTENANCE_KIND,
     description="Delete old Dagster run/event history of archived renders and maintenance runs (daily).")
def dagster_history_retention_job():
    dagster_history_retention()


storage_usage_job = define_asset_job(
    name="storage_usage_job",
    selection=[AssetKey("storage_usage")],
    executor_def=in_process_executor,
    tags=MAINTENANCE_KIND,
    description="Measure object-store usage per prefix (hourly).",
)

MAINTENANCE_JOBS: list = [
    retention_cleanup_job,
    orphan_reconciliation_job,
    stale_render_reaper_job,
    dagster_history_retention_job,
    storage_usage_job,
]
