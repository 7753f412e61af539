"""Restore a backup into a stopped stack (or a fresh RENDER_PIPELINE_HOME), then reconcile.

Nothing is changed until everything has been checked: the stack is stopped, the manifest and
every file match, the bucket is the backup's bucket, and both dumps have been loaded into
staging databases whose row counts equal the manifest's.  Only then do the staging databases
replace the live ones.  Reconciliation with the bucket as it is now:

- completed renders whose objects are gone are failed and requeued (the requeue sensor
  renders them);
- uploads new or changed since the backup have no settled row, so the upload sensor renders
  them in its first listing cycle after `up` (its cursor is a position in a cycle, not a
  high-water mark, so a restored cursor misses nothing);
- render objects without a row are renders made after the backup: those uploads' re-renders
  overwrite the same keys (render ids derive from upload key, style and preset), and the
  daily orphan job reports whatever remains.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from render_pipeline.keys import UPLOADS_PREFIX, storable_key
from render_pipeline.maintenance.orphans import OrphanReport, requeue_lost_outputs
from render_pipeline.operations import postgres_tools as pg
from render_pipeline.operations.backup import (
    APP_DUMP,
    DAGSTER_DUMP,
    BackupError,
    Say,
    app_counts,
    dagster_counts,
    read_inventory,
    verify_backup,
)
from render_pipeline.operations.postgres_tools import Database
from render_pipeline.stack import StackDatabases, refuse_if_running, stack_databases
from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.embedded_postgres import dagster_storage_url
from render_pipeline.resources.factory import object_store_from_settings
from render_pipeline.resources.object_store import ObjectInfo
from render_pipeline.settings import Settings
from render_pipeline.store import migrations
from render_pipeline.store import uploads as uploads_store

LOG = logging.getLogger(__name__)
STAGING_SUFFIX = "_restoring"
INTERRUPTED = "interrupted: restored from a backup taken while this run was executing; its worker is gone"
VERSIONS_PER_QUERY = 1000


@dataclass(frozen=True)
class InventoryDiff:
    """The bucket now against the backup's inventory, per top-level prefix."""

    missing: Counter = field(default_factory=Counter)  # listed in the backup, gone now
    changed: Counter = field(default_factory=Counter)  # another ETag now
    added: Counter = field(default_factory=Counter)  # not in the backup


@dataclass(frozen=True)
class RestoreResult:
    manifest: dict
    seconds: float
    migrations_applied: list[str]
    inventory: InventoryDiff
    lost_outputs: OrphanReport
    uploads_to_render: int
    interrupted_runs: int


def restore(settings: Settings, source: Path, say: Say = print) -> RestoreResult:
    started = time.monotonic()
    refuse_if_running(settings)
    manifest = verify_backup(source)
    say(f"verified {source}: taken {manifest['started_at']}, schema {manifest['schema_version']:03d}, "
        f"code {manifest['code_version']['package']} {manifest['code_version']['git'] or ''}".rstrip())
    store = object_store_from_settings(settings.object_store)
    current = {obj.key: obj for obj in store.iter_objects("")}
    inventory = read_inventory(source)
    diff = _compare(inventory, current)
    if inventory and sum(diff.missing.values()) == len(inventory):
        raise BackupError(f"the object store ({store.describe()}) holds none of the {len(inventory)} objects in the "
                          f"backup's inventory: point MINIO_BUCKET / LOCAL_STORE_ROOT at the stack's bucket")
    with stack_databases(settings, create_embedded=True) as databases:
        refuse_if_running(settings, databases.dagster)
        _replace_databases(databases, Path(source).expanduser().absolute(), manifest, say)
        interrupted = _fail_interrupted_runs(databases.dagster)
        database = PostgresResource(url=databases.app.libpq_url())
        try:
            with database.connection() as conn:
                applied = [f"{m.version:03d}_{m.name}" for m in migrations.upgrade(conn)]
                migrations.seed(conn)
            lost = requeue_lost_outputs(database, store, LOG, completed_before=datetime.now(UTC))
            uploads_to_render = _uploads_needing_runs(database, current.values())
        finally:
            database.close()
    return RestoreResult(manifest, round(time.monotonic() - started, 3), applied, diff, lost, uploads_to_render,
                         interrupted)


def _compare(inventory: dict[str, dict], current: dict[str, ObjectInfo]) -> InventoryDiff:
    diff = InventoryDiff()
    for key, entry in inventory.items():
        now = current.get(key)
        if now is None:
            diff.missing[_prefix(key)] += 1
        elif now.etag != entry["etag"]:
            diff.changed[_prefix(key)] += 1
    for key in current.keys() - inventory.keys():
        diff.added[_prefix(key)] += 1
    return diff


def _prefix(key: str) -> str:
    return key.split("/", 1)[0] + "/"


def _replace_databases(databases: StackDatabases, source: Path, manifest: dict, say: Say) -> None:
    """Load both dumps into staging databases, check their counts, then swap them in."""
    plan = [(databases.app, source / APP_DUMP, app_counts, manifest["app_database"]["counts"]),
            (databases.dagster, source / DAGSTER_DUMP, dagster_counts, manifest["dagster_database"]["counts"])]
    for target, *_ in plan:
        busy = pg.other_sessions(target.on("postgres"), [target.name])
        if busy:
            raise BackupError(f"{target.describe()} has {busy} open session(s): stop what uses it and retry")
    staged: list[Database] = []
    try:
        for target, dump, count, expected in plan:
            staging = target.on(target.name[: 63 - len(STAGING_SUFFIX)] + STAGING_SUFFIX)
            pg.recreate_database(target.on("postgres"), staging.name)
            staged.append(staging)
            try:
                pg.restore(staging, dump)
            except pg.ToolFailed as exc:
                raise BackupError(f"loading {dump.name} failed, nothing was changed: {exc}") from None
            with staging.connect() as conn:
                found = count(conn)
            if found != expected:
                raise BackupError(f"{dump.name} restored with counts {found}, the manifest says {expected}: "
                                  f"nothing was changed")
    except BaseException:
        for staging in staged:
            pg.drop_database(staging.on("postgres"), staging.name)
        raise
    for (target, dump, _, expected), staging in zip(plan, staged):
        pg.replace_database(target.on("postgres"), staging.name, target.name)
        say(f"restored {target.describe()} from {dump.name} ({_describe_counts(expected)})")


def _fail_interrupted_runs(dagster: Database) -> int:
    """Runs the backup caught executing have no worker now, and would hold their run slots
    until run monitoring's max runtime.  Failing them hands them to the usual crash recovery:
    the failure sensor fails their unfinished renders and the daemon retries each run once."""
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
    from dagster._core.instance.ref import InstanceRef

    url = dagster_storage_url(dagster.libpq_url(), dagster.name)
    with tempfile.TemporaryDirectory(prefix="render-pipeline-restore-") as scratch:
        ref = InstanceRef.from_dir(scratch, overrides={"storage": {"postgres": {"postgres_url": url}}})
        instance = DagsterInstance.from_ref(ref)
        try:
            runs = instance.get_runs(filters=RunsFilter(statuses=[
                DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]))
            for run in runs:
                instance.report_run_failed(run, message=INTERRUPTED)
        finally:
            instance.dispose()
    return len(runs)


def _describe_counts(counts: dict) -> str:
    return ", ".join(f"{value} {name}" for name, value in counts.items() if not isinstance(value, dict))


def _uploads_needing_runs(database: PostgresResource, objects) -> int:
    """Uploads the upload sensor will request after `up`, by the sensor's own rule."""
    versions = [(storable_key(o.key), o.etag) for o in objects if o.key.startswith(UPLOADS_PREFIX)]
    needing = 0
    with database.connection() as conn:
        for start in range(0, len(versions), VERSIONS_PER_QUERY):
            needing += len(uploads_store.versions_needing_runs(conn, versions[start : start + VERSIONS_PER_QUERY]))
    return needing
