"""Maintenance: retention, orphan reconciliation, the stale-render reaper, Dagster history.

Each procedure is a plain function over the resources (testable without a run) plus a thin
op that validates its config, calls it and reports the counts as output metadata.  Every
procedure works in bounded batches, commits per batch and can be re-run at any time: a run
killed half way is finished by the next one.
"""

import functools
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from logging import Logger

from dagster import (
    Config,
    DagsterInstance,
    DagsterRunStatus,
    Failure,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    RunsFilter,
    op,
)
from pydantic import field_validator

from render_pipeline.keys import (
    RENDERS_PREFIX,
    UPLOADS_PREFIX,
    InvalidUploadKey,
    asset_id_for,
    partition_key_for,
    storable_key,
)
from render_pipeline.partitions import uploads_partitions
from render_pipeline.render_job import partition_keys_of
from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.object_store import S3_DELETE_BATCH, ObjectInfo, ObjectStore
from render_pipeline.store import maintenance as store
from render_pipeline.store import uploads as uploads_store

RENDER_KIND = {"render_pipeline/kind": "render"}
MAINTENANCE_KIND = {"render_pipeline/kind": "maintenance"}
ALIVE_RUN_STATUSES = (
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
)
FINISHED_RUN_STATUSES = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
LIST_PAGE_SIZE = 1000
MAX_IN_FLIGHT_RUNS = 5000  # alive render runs inspected by the queued-render check
OUTPUT_MISSING = "output missing: the render's objects are not in the object store (orphan reconciliation)"


def _in_range(name: str, value: int, low: int, high: int, unit: str = "") -> int:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}{unit} (got {value})")
    return value


# ---- retention cleanup -----------------------------------------------------------------------

class RetentionConfig(Config):
    retention_days: int = 90
    failed_archive_days: int = 7
    dry_run: bool = False
    batch_size: int = 500

    @field_validator("retention_days", "failed_archive_days")
    @classmethod
    def _days(cls, value: int, info) -> int:
        return _in_range(info.field_name, value, 1, 3650, " days")

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, value: int) -> int:
        # Two objects per render: one batch is at most one S3 DeleteObjects call.
        return _in_range("batch_size", value, 1, S3_DELETE_BATCH // 2)


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
    after = store.FIRST_ID
    while True:
        with database.transaction() as conn:
            rows = store.lock_expired_completed(conn, older_than=older_than, after_id=after, limit=config.batch_size)
            if not rows:
                break
            after = rows[-1]["id"]
            report.batches += 1
            report.expired_renders += len(rows)
            if config.dry_run:
                continue
            keys = [key for row in rows for key in _render_keys(row)]
            result = object_store.delete_many(keys)
            gone = set(result.deleted)
            # Not servable once any of its objects is gone; a leftover object of an archived
            # render is deleted by orphan reconciliation.
            archived = [row["id"] for row in rows if any(key in gone for key in _render_keys(row))]
            report.archived_renders += store.archive_completed(conn, archived)
            report.objects_deleted += len(gone)
            report.delete_errors += len(result.errors)
            report.first_errors += [f"{key}: {error}" for key, error in result.errors.items()][: 5 - len(report.first_errors)]
        if result.errors:
            log.error(f"retention stopped: {len(result.errors)} object(s) could not be deleted; "
                      f"their renders stay completed for the next run")
            break
        log.info(f"retention batch {report.batches}: archived {len(archived)} of {len(rows)} render(s)")

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


def _render_keys(row: dict) -> list[str]:
    return [key for key in (row["output_minio_key"], row["preview_minio_key"]) if key]


# ---- orphan reconciliation -------------------------------------------------------------------

class OrphanConfig(Config):
    grace_hours: int = 24
    dry_run: bool = False
    requeue_missing: bool = False
    page_size: int = LIST_PAGE_SIZE

    @field_validator("grace_hours")
    @classmethod
    def _grace(cls, value: int) -> int:
        return _in_range("grace_hours", value, 1, 24 * 90, " hours")

    @field_validator("page_size")
    @classmethod
    def _page(cls, value: int) -> int:
        return _in_range("page_size", value, 10, LIST_PAGE_SIZE)


@dataclass
class OrphanReport:
    dry_run: bool
    render_objects_seen: int = 0
    orphan_objects: int = 0
    orphan_objects_deleted: int = 0
    orphan_objects_in_grace: int = 0
    delete_errors: int = 0
    missing_outputs: int = 0
    marked_failed: int = 0
    requeued: int = 0
    upload_objects_seen: int = 0
    unregistered_uploads: int = 0
    uploads_registered: int = 0
    invalid_upload_keys: int = 0
    uploads_in_grace: int = 0
    first_errors: list[str] = field(default_factory=list)


def reconcile_orphans(
    database: PostgresResource,
    object_store: ObjectStore,
    instance: DagsterInstance,
    config: OrphanConfig,
    log: Logger,
    *,
    now: datetime | None = None,
) -> OrphanReport:
    """Make the bucket and the tables agree, in both directions, in one pass over each prefix.

    `renders/` keys sort by render id exactly as the `renders` primary key does, so one listing
    pass checks both directions: objects without a live row (deleted) and completed rows
    without their objects (marked failed), one query per listed page.  Nothing younger than the
    grace period is touched, so renders in flight are safe.
    """
    report = OrphanReport(dry_run=config.dry_run)
    cutoff = (now or datetime.now(UTC)) - timedelta(hours=config.grace_hours)
    _reconcile_renders(database, object_store, config, cutoff, report, log)
    _register_unregistered_uploads(database, object_store, instance, config, cutoff, report)
    return report


def _reconcile_renders(database, object_store, config, cutoff, report, log) -> None:
    carried: dict[uuid.UUID, list[ObjectInfo]] = {}
    covered_from = store.FIRST_ID  # every render id below this has been checked
    cursor: str | None = None
    while True:
        page = object_store.list_page(RENDERS_PREFIX, cursor=cursor, page_size=config.page_size)
        report.render_objects_seen += len(page.objects)
        stray: list[ObjectInfo] = []
        for obj in page.objects:
            render_id = _render_id_of(obj.key)
            if render_id is None:
                stray.append(obj)  # not a render's key: no row can own it
            else:
                carried.setdefault(render_id, []).append(obj)
        if page.next_cursor is None:
            ready, carried, covered_to = carried, {}, None
        else:
            # The last render on the page may continue on the next one: keep it for then.
            tail = max(carried, default=None)
            if tail is None:
                ready, covered_to = {}, covered_from
            else:
                ready = {rid: objs for rid, objs in carried.items() if rid < tail}
                carried = {tail: carried[tail]}
                covered_to = tail
        _reconcile_stretch(database, object_store, config, cutoff, report, ready, stray, covered_from, covered_to, log)
        if covered_to is None:
            return
        covered_from = covered_to
        cursor = page.next_cursor


def _reconcile_stretch(database, object_store, config, cutoff, report, ready, stray, low, high, log) -> None:
    """One stretch of the listing: render ids in [low, high) (high None = to the end)."""
    with database.connection() as conn:
        statuses = store.render_statuses(conn, list(ready))
    doomed: dict[uuid.UUID | None, list[str]] = {}
    for render_id, objects in [*ready.items(), *((None, [obj]) for obj in stray)]:
        if render_id is not None and statuses.get(render_id, "archived") != "archived":
            continue
        for obj in objects:
            report.orphan_objects += 1
            if obj.last_modified >= cutoff:
                report.orphan_objects_in_grace += 1
            else:
                doomed.setdefault(render_id, []).append(obj.key)
    if doomed and not config.dry_run:
        _delete_orphans(database, object_store, doomed, report)

    listed = {rid: {obj.key for obj in objects} for rid, objects in ready.items()}
    missing: list[uuid.UUID] = []
    after = low
    while True:
        with database.connection() as conn:
            rows = store.completed_in_id_range(conn, after_id=_just_below(after), upto_id=high, completed_before=cutoff,
                                               limit=config.page_size)
        for row in rows:
            absent = [key for key in _render_keys(row) if key not in listed.get(row["id"], set())]
            # Confirm with HEAD: the listing is a moment ago, and a key may live elsewhere.
            if absent and any(object_store.head(key) is None for key in absent):
                missing.append(row["id"])
        if len(rows) < config.page_size:
            break
        after = _just_above(rows[-1]["id"])
    report.missing_outputs += len(missing)
    if missing and not config.dry_run:
        with database.connection() as conn:
            report.marked_failed += store.fail_missing_output(conn, missing, completed_before=cutoff,
                                                              message=OUTPUT_MISSING)
            if config.requeue_missing:
                report.requeued += len(store.requeue(conn, missing, reason="output missing"))
        log.info(f"{len(missing)} completed render(s) had lost their objects")


def _delete_orphans(database, object_store, doomed: dict[uuid.UUID | None, list[str]], report) -> None:
    """Delete while holding the rows' locks, re-checking that the database still says so."""
    with database.transaction() as conn:
        locked = store.lock_renders(conn, [rid for rid in doomed if rid is not None])
        keys = [key for rid, ks in doomed.items() if rid is None or locked.get(rid, "archived") == "archived"
                for key in ks]
        result = object_store.delete_many(keys)
    report.orphan_objects_deleted += len(result.deleted)
    report.delete_errors += len(result.errors)
    report.first_errors += [f"{key}: {error}" for key, error in result.errors.items()][: 5 - len(report.first_errors)]


def _register_unregistered_uploads(database, object_store, instance, config, cutoff, report) -> None:
    cursor: str | None = None
    while True:
        page = object_store.list_page(UPLOADS_PREFIX, cursor=cursor, page_size=config.page_size)
        report.upload_objects_seen += len(page.objects)
        with database.connection() as conn:
            known = store.registered_object_keys(conn, [storable_key(obj.key) for obj in page.objects])
            to_register = []
            for obj in page.objects:
                key = storable_key(obj.key)
                if key in known:
                    continue
                report.unregistered_uploads += 1
                if obj.last_modified >= cutoff:
                    report.uploads_in_grace += 1
                    continue
                try:
                    to_register.append((asset_id_for(obj.key), key, partition_key_for(obj.key)))
                except InvalidUploadKey as exc:
                    report.invalid_upload_keys += 1
                    if not config.dry_run:
                        uploads_store.record_invalid_key(conn, asset_id=asset_id_for(obj.key), object_key=key,
                                                         etag=obj.etag, reason=str(exc))
            if to_register and not config.dry_run:
                inserted = store.register_uploads(conn, to_register)
                # The row first, then the partition: the upload sensor requests the run.
                instance.add_dynamic_partitions(uploads_partitions.name, inserted)
                report.uploads_registered += len(inserted)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _render_id_of(key: str) -> uuid.UUID | None:
    """The render id of ``renders/{id}/…`` in canonical form (the form that sorts like the key)."""
    parts = key[len(RENDERS_PREFIX):].split("/", 1)
    if len(parts) != 2:
        return None
    try:
        render_id = uuid.UUID(parts[0])
    except ValueError:
        return None
    return render_id if str(render_id) == parts[0] else None


def _just_below(render_id: uuid.UUID) -> uuid.UUID:
    return uuid.UUID(int=render_id.int - 1) if render_id.int else render_id


def _just_above(render_id: uuid.UUID) -> uuid.UUID:
    return uuid.UUID(int=render_id.int + 1)


# ---- stale-render reaper ---------------------------------------------------------------------

class ReaperConfig(Config):
    started_limit_minutes: int = 60
    cancel_overdue_runs: bool = True
    queued_limit_minutes: int = 360
    max_requeues: int = 3
    dry_run: bool = False
    batch_size: int = 500

    @field_validator("started_limit_minutes", "queued_limit_minutes")
    @classmethod
    def _limit(cls, value: int, info) -> int:
        return _in_range(info.field_name, value, 5, 7 * 24 * 60, " minutes")

    @field_validator("max_requeues")
    @classmethod
    def _requeues(cls, value: int) -> int:
        return _in_range("max_requeues", value, 0, 20)

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, value: int) -> int:
        return _in_range("batch_size", value, 1, 5000)


@dataclass
class ReaperReport:
    dry_run: bool
    stale_started: int = 0
    started_failed: int = 0
    runs_missing: int = 0
    runs_finished: int = 0
    runs_canceled: int = 0
    left_to_run_monitoring: int = 0
    stale_queued: int = 0
    queued_waiting_for_run: int = 0
    queued_requeued: int = 0
    queued_failed: int = 0


def reap_stale_renders(
    database: PostgresResource, instance: DagsterInstance, config: ReaperConfig, log: Logger
) -> ReaperReport:
    """`started` renders past the limit whose run is gone, finished or overdue → `failed`;
    `queued` renders that no run picked up → requeued (or `failed` after ``max_requeues``).

    A queued render never failed — its run request was lost (sensor stopped, run deleted) — so
    it is requeued rather than failed: the requeue sensor then launches a fresh run.  The
    ``max_requeues`` cap turns a render that can never get a run into a visible failure.
    """
    report = ReaperReport(dry_run=config.dry_run)
    started_limit = timedelta(minutes=config.started_limit_minutes)
    after = store.FIRST_ID
    while True:
        with database.connection() as conn:
            rows = store.stale_started(conn, older_than=started_limit, after_id=after, limit=config.batch_size)
        if not rows:
            break
        after = rows[-1]["id"]
        report.stale_started += len(rows)
        by_run: dict[str | None, list[uuid.UUID]] = {}
        for row in rows:
            by_run.setdefault(row["dagster_run_id"], []).append(row["id"])
        for run_id, render_ids in by_run.items():
            reason = _reap_run(instance, run_id, started_limit, config, report, log)
            if reason is None:
                report.left_to_run_monitoring += len(render_ids)
            elif not config.dry_run:
                with database.connection() as conn:
                    report.started_failed += store.fail_stale_started(
                        conn, render_ids, older_than=started_limit, message=reason)

    queued_limit = timedelta(minutes=config.queued_limit_minutes)
    in_flight: set[str] | None = None
    after = store.FIRST_ID
    while True:
        with database.connection() as conn:
            rows = store.stale_queued(conn, older_than=queued_limit, after_id=after, limit=config.batch_size)
        if not rows:
            break
        after = rows[-1]["id"]
        report.stale_queued += len(rows)
        if in_flight is None:
            in_flight = _partitions_in_flight(instance)
        orphaned = [row for row in rows if row["partition_key"] not in in_flight]
        report.queued_waiting_for_run += len(rows) - len(orphaned)
        requeue = [row["id"] for row in orphaned if row["attempt"] < config.max_requeues]
        give_up = [row["id"] for row in orphaned if row["attempt"] >= config.max_requeues]
        if config.dry_run:
            report.queued_requeued += len(requeue)
            report.queued_failed += len(give_up)
            continue
        with database.connection() as conn:
            reason = f"stale: queued for more than {queued_limit} with no run in flight"
            report.queued_requeued += len(store.requeue(conn, requeue, reason=reason, from_statuses=("queued",)))
            report.queued_failed += store.fail_stale_queued(
                conn, give_up, older_than=queued_limit,
                message=f"{reason}, after {config.max_requeues} requeue(s); requeue by hand once the cause is fixed",
            )
    return report


def _reap_run(instance, run_id, limit, config, report, log) -> str | None:
    """Why the renders of this run are stale (and cancel it if it is overdue), or None to leave
    them to Dagster's run monitoring."""
    run = instance.get_run_by_id(run_id) if run_id else None
    if run is None:
        report.runs_missing += 1
        return f"stale: started more than {limit} ago and its Dagster run ({run_id or 'none'}) does not exist"
    if run.status in FINISHED_RUN_STATUSES:
        report.runs_finished += 1
        return f"stale: Dagster run {run_id} ended {run.status.value} without finishing this render"
    if run.status not in ALIVE_RUN_STATUSES or not config.cancel_overdue_runs:
        return None
    report.runs_canceled += 1
    if not config.dry_run:
        message = f"canceled by the stale-render reaper: still {run.status.value} after {limit}"
        # The coordinator dequeues a queued run or asks the launcher to stop the worker; a
        # worker that is gone cannot answer, so the run is then marked canceled directly.
        if not instance.run_coordinator.cancel_run(run_id):
            current = instance.get_run_by_id(run_id)
            if current is not None and not current.is_finished:
                instance.report_run_canceled(current, message=message)
        log.warning(f"run {run_id}: {message}")
    return f"stale: Dagster run {run_id} was still {run.status.value} after {limit}; canceled by the reaper"


def _partitions_in_flight(instance: DagsterInstance) -> set[str]:
    """Upload partitions covered by a render run that is queued or running."""
    runs = instance.get_runs(RunsFilter(statuses=list(ALIVE_RUN_STATUSES), tags=RENDER_KIND), limit=MAX_IN_FLIGHT_RUNS)
    ordered_keys = functools.cache(lambda: tuple(instance.get_dynamic_partitions(uploads_partitions.name)))
    return {key for run in runs for key in partition_keys_of(run.tags, ordered_keys)}


# ---- Dagster history retention ---------------------------------------------------------------

class HistoryConfig(Config):
    render_history_days: int = 90
    maintenance_history_days: int = 30
    dry_run: bool = False
    batch_size: int = 200

    @field_validator("render_history_days", "maintenance_history_days")
    @classmethod
    def _days(cls, value: int, info) -> int:
        return _in_range(info.field_name, value, 1, 3650, " days")

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, value: int) -> int:
        return _in_range("batch_size", value, 1, 1000)


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


# ---- ops -------------------------------------------------------------------------------------

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
