"""Orphan reconciliation: the bucket and the tables made to agree, in both directions."""

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from logging import Logger
from operator import itemgetter

from dagster import Config, DagsterInstance
from pydantic import field_validator

from render_pipeline.keys import (
    RENDERS_PREFIX,
    UPLOADS_PREFIX,
    InvalidUploadKey,
    asset_id_for,
    partition_key_for,
    storable_key,
)
from render_pipeline.maintenance.common import in_range, keyset_batches, render_keys
from render_pipeline.render.partitions import uploads_partitions
from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.object_store import LIST_PAGE_SIZE, ObjectInfo, ObjectStore
from render_pipeline.store import maintenance as store
from render_pipeline.store import uploads as uploads_store

OUTPUT_MISSING = "output missing: the render's objects are not in the object store (orphan reconciliation)"


class OrphanConfig(Config):
    grace_hours: int = 24
    dry_run: bool = False
    requeue_missing: bool = False
    page_size: int = LIST_PAGE_SIZE

    @field_validator("grace_hours")
    @classmethod
    def _grace(cls, value: int) -> int:
        return in_range("grace_hours", value, 1, 24 * 90, " hours")

    @field_validator("page_size")
    @classmethod
    def _page(cls, value: int) -> int:
        return in_range("page_size", value, 10, LIST_PAGE_SIZE)


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


def requeue_lost_outputs(database: PostgresResource, object_store: ObjectStore, log: Logger, *,
                         completed_before: datetime) -> OrphanReport:
    """After a restore, with the stack stopped: no grace period, since nothing is in flight.

    Completed renders whose objects are gone are failed and requeued.  Objects without a row
    are counted, not deleted: they are renders made after the backup, which the upload
    sensor's re-render of their uploads overwrites (render keys are derived from the upload),
    and the daily job reports any that remain.
    """
    report = OrphanReport(dry_run=False)
    config = OrphanConfig(requeue_missing=True)
    _reconcile_renders(database, object_store, config, completed_before, report, log, delete_orphans=False)
    return report


def _reconcile_renders(database, object_store, config, cutoff, report, log, *, delete_orphans=True) -> None:
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
        _reconcile_stretch(database, object_store, config, cutoff, report, ready, stray, covered_from, covered_to, log,
                           delete_orphans=delete_orphans)
        if covered_to is None:
            return
        covered_from = covered_to
        cursor = page.next_cursor


def _reconcile_stretch(database, object_store, config, cutoff, report, ready, stray, low, high, log, *,
                       delete_orphans) -> None:
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
    if doomed and delete_orphans and not config.dry_run:
        _delete_orphans(database, object_store, doomed, report)

    listed = {rid: {obj.key for obj in objects} for rid, objects in ready.items()}
    def completed_after(after_id: uuid.UUID) -> list[dict]:
        with database.connection() as conn:
            return store.completed_in_id_range(conn, after_id=after_id, upto_id=high, completed_before=cutoff,
                                               limit=config.page_size)

    missing: list[uuid.UUID] = []
    for rows in keyset_batches(completed_after, _just_below(low), itemgetter("id"), limit=config.page_size):
        for row in rows:
            absent = [key for key in render_keys(row) if key not in listed.get(row["id"], set())]
            # Confirm with HEAD: the listing is a moment ago, and a key may live elsewhere.
            if absent and any(object_store.head(key) is None for key in absent):
                missing.append(row["id"])
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
