"""Dagster history retention: old runs and their event logs, unless a live render points to them."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dagster import Config, DagsterInstance, RunsFilter
from pydantic import field_validator

from render_pipeline.maintenance.common import FINISHED_RUN_STATUSES, MAINTENANCE_KIND, RENDER_KIND, in_range
from render_pipeline.resources.database import PostgresResource
from render_pipeline.store import maintenance as store


class HistoryConfig(Config):
    render_history_days: int = 90
    maintenance_history_days: int = 30
    dry_run: bool = False
    batch_size: int = 200

    @field_validator("render_history_days", "maintenance_history_days")
    @classmethod
    def _days(cls, value: int, info) -> int:
        return in_range(info.field_name, value, 1, 3650, " days")

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, value: int) -> int:
        return in_range("batch_size", value, 1, 1000)


@dataclass
class HistoryReport:
    dry_run: bool
    render_runs_examined: int = 0
    render_runs_deleted: int = 0
    render_runs_kept: int = 0
    maintenance_runs_deleted: int = 0


def prune_dagster_history(
    database: PostgresResource,
    instance: DagsterInstance,
    *,
    render_older_than: timedelta,
    maintenance_older_than: timedelta,
    dry_run: bool,
    batch_size: int,
    keep_run_ids: Iterable[str] = (),
) -> HistoryReport:
    """Delete finished render runs older than the cutoff that no live render points to (only
    archived renders, or none), and old maintenance runs, with their event logs."""
    report = HistoryReport(dry_run=dry_run)
    keep = set(keep_run_ids)
    now = datetime.now(UTC)
    for tags, cutoff, check_renders in (
        (RENDER_KIND, now - render_older_than, True),
        (MAINTENANCE_KIND, now - maintenance_older_than, False),
    ):
        cursor: str | None = None  # the last run kept: deleting a cursor run would end paging
        while True:
            records = instance.get_run_records(
                RunsFilter(statuses=list(FINISHED_RUN_STATUSES), tags=tags, created_before=cutoff),
                limit=batch_size, ascending=True, cursor=cursor,
            )
            if not records:
                break
            run_ids = [record.dagster_run.run_id for record in records]
            needed = set(keep)
            if check_renders:
                report.render_runs_examined += len(run_ids)
                with database.connection() as conn:
                    needed |= store.run_ids_still_needed(conn, run_ids)
            deleted = 0
            for run_id in run_ids:
                if run_id in needed:
                    cursor = run_id
                    report.render_runs_kept += check_renders
                    continue
                if dry_run:
                    cursor = run_id
                else:
                    instance.delete_run(run_id)
                deleted += 1
            if check_renders:
                report.render_runs_deleted += deleted
            else:
                report.maintenance_runs_deleted += deleted
            if len(records) < batch_size:
                break
    return report
