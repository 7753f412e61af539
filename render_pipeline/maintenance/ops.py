"""The maintenance ops: each validates its config, runs one procedure of this package and
reports the counts as output metadata."""

from dataclasses import asdict
from datetime import timedelta

from dagster import Failure, MetadataValue, Nothing, OpExecutionContext, Out, Output, op

from render_pipeline.maintenance.common import MAINTENANCE_KIND
from render_pipeline.maintenance.history import HistoryConfig, prune_dagster_history
from render_pipeline.maintenance.orphans import OrphanConfig, reconcile_orphans
from render_pipeline.maintenance.reaper import ReaperConfig, reap_stale_renders
from render_pipeline.maintenance.retention import RetentionConfig, run_retention
from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.object_store import ObjectStore


def _output(report) -> Output:
    values = asdict(report)
    metadata = {
        name: MetadataValue.int(value) if isinstance(value, int) and not isinstance(value, bool)
        else MetadataValue.bool(value) if isinstance(value, bool)
        else MetadataValue.json(value)
        for name, value in values.items()
    }
    return Output(None, metadata=metadata)


def _fail_on_errors(report, what: str) -> None:
    if report.delete_errors:
        raise Failure(
            description=f"{what}: {report.delete_errors} object(s) could not be deleted; the database records "
                        f"only what was deleted and the next run retries the rest",
            metadata={"report": MetadataValue.json(asdict(report))},
        )


@op(out=Out(Nothing), tags=MAINTENANCE_KIND)
def retention_cleanup(context: OpExecutionContext, config: RetentionConfig, database: PostgresResource,
                      object_store: ObjectStore):
    """Archive completed renders past retention (objects deleted) and flag old failures archived."""
    report = run_retention(database, object_store, config, context.log)
    _fail_on_errors(report, "retention cleanup")
    yield _output(report)


@op(out=Out(Nothing), tags=MAINTENANCE_KIND)
def orphan_reconciliation(context: OpExecutionContext, config: OrphanConfig, database: PostgresResource,
                          object_store: ObjectStore):
    """Delete objects no live render owns, fail renders whose objects are gone, register stray uploads."""
    report = reconcile_orphans(database, object_store, context.instance, config, context.log)
    _fail_on_errors(report, "orphan reconciliation")
    yield _output(report)


@op(out=Out(Nothing), tags=MAINTENANCE_KIND)
def stale_render_reaper(context: OpExecutionContext, config: ReaperConfig, database: PostgresResource):
    """Fail `started` renders whose run is gone or overdue; requeue `queued` renders no run picked up."""
    yield _output(reap_stale_renders(database, context.instance, config, context.log))


@op(out=Out(Nothing), tags=MAINTENANCE_KIND)
def dagster_history_retention(context: OpExecutionContext, config: HistoryConfig, database: PostgresResource):
    """Delete old run and event history of archived renders and of maintenance runs."""
    report = prune_dagster_history(
        database, context.instance,
        render_older_than=timedelta(days=config.render_history_days),
        maintenance_older_than=timedelta(days=config.maintenance_history_days),
        dry_run=config.dry_run, batch_size=config.batch_size, keep_run_ids=[context.run_id],
    )
    yield _output(report)
