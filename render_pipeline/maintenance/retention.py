"""Retention cleanup: completed renders past retention lose their objects and become `archived`."""

from dataclasses import dataclass, field
from datetime import timedelta
from logging import Logger

from dagster import Config
from pydantic import field_validator

from render_pipeline.maintenance.common import in_range, keyset_batches, render_keys
from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.object_store import S3_DELETE_BATCH, ObjectStore
from render_pipeline.store import maintenance as store


class RetentionConfig(Config):
    retention_days: int = 90
    failed_archive_days: int = 7
    dry_run: bool = False
    batch_size: int = 500

    @field_validator("retention_days", "failed_archive_days")
    @classmethod
    def _days(cls, value: int, info) -> int:
        return in_range(info.field_name, value, 1, 3650, " days")

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, value: int) -> int:
        # Two objects per render: one batch is at most one S3 DeleteObjects call.
        return in_range("batch_size", value, 1, S3_DELETE_BATCH // 2)


@dataclass
class RetentionReport:
    dry_run: bool
    expired_renders: int = 0
    archived_renders: int = 0
    objects_deleted: int = 0
    delete_errors: int = 0
    failed_flagged_archived: int = 0
    batches: int = 0
    first_errors: list[str] = field(default_factory=list)


def run_retention(
    database: PostgresResource, object_store: ObjectStore, config: RetentionConfig, log: Logger
) -> RetentionReport:
    """Delete the objects of completed renders past retention and mark them `archived`.

    Per batch, in one short transaction: lock the rows, delete their objects, archive the rows
    whose objects are gone, commit.  A crash before the commit leaves the rows `completed` and
    the next run deletes again (deleting an absent key succeeds) and archives them; a render
    whose objects could not be deleted stays `completed` and the run stops with a failure.
    """
    report = RetentionReport(dry_run=config.dry_run)
    older_than = timedelta(days=config.retention_days)

    def next_batch(after: tuple) -> list[dict]:
        with database.transaction() as conn:
            rows = store.lock_expired_completed(conn, older_than=older_than, after=after, limit=config.batch_size)
            if rows and not config.dry_run:
                _archive_batch(conn, object_store, rows, report, log)
        return rows

    for rows in keyset_batches(next_batch, store.FIRST_COMPLETED, lambda row: (row["completed_at"], row["id"]),
                               limit=config.batch_size):
        report.batches += 1
        report.expired_renders += len(rows)
        if report.delete_errors:
            log.error(f"retention stopped: {report.delete_errors} object(s) could not be deleted; "
                      f"their renders stay completed for the next run")
            break

    failed_age = timedelta(days=config.failed_archive_days)
    if config.dry_run:
        with database.connection() as conn:
            report.failed_flagged_archived = store.count_old_failed(conn, older_than=failed_age)
    else:
        while True:
            with database.connection() as conn:
                flagged = store.flag_old_failed_archived(conn, older_than=failed_age, limit=config.batch_size)
            report.failed_flagged_archived += flagged
            if flagged < config.batch_size:
                break
    return report


def _archive_batch(conn, object_store: ObjectStore, rows: list[dict], report: RetentionReport, log: Logger) -> None:
    """Delete the objects of one locked batch and archive the renders whose objects are gone."""
    keys = [key for row in rows for key in render_keys(row)]
    result = object_store.delete_many(keys)
    gone = set(result.deleted)
    # Not servable once any of its objects is gone; a leftover object of an archived render is
    # deleted by orphan reconciliation.
    archived = [row["id"] for row in rows if any(key in gone for key in render_keys(row))]
    report.archived_renders += store.archive_completed(conn, archived)
    report.objects_deleted += len(gone)
    report.delete_errors += len(result.errors)
    report.first_errors += [f"{key}: {error}" for key, error in result.errors.items()][: 5 - len(report.first_errors)]
    if not result.errors:
        log.info(f"retention: archived {len(archived)} of {len(rows)} expired render(s)")
