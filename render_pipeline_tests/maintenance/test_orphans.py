"""Orphan reconciliation on seeded data: exactly the 50 orphan objects deleted, the 20 renders
with missing outputs failed, the 5 unregistered uploads registered — and nothing else."""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime, timedelta

from render_pipeline.maintenance.jobs import orphan_reconciliation_job
from render_pipeline.keys import partition_key_for, render_object_keys
from render_pipeline.maintenance.orphans import OUTPUT_MISSING, OrphanConfig, reconcile_orphans
from render_pipeline.resources.object_store import LocalObjectStore
from render_pipeline_tests.maintenance.scenario import all_keys, seed_standard, snapshot, statuses

LOG = logging.getLogger("test")
AFTER_GRACE = timedelta(hours=25)  # objects written now are past the 24 h grace period then


def test_both_directions_with_exact_counts(database, s3_store, seeded, instance):
    before = all_keys(s3_store)
    started = time.perf_counter()
    # An odd page size splits renders' object pairs across pages.
    report = reconcile_orphans(database, s3_store, instance, OrphanConfig(page_size=99), LOG,
                               now=datetime.now(UTC) + AFTER_GRACE)
    elapsed = time.perf_counter() - started
    print(f"orphan reconciliation over {len(before)} objects / 1000 rows: {elapsed:.2f}s")

    assert report.orphan_objects == report.orphan_objects_deleted == 50
    assert report.orphan_objects_in_grace == report.delete_errors == 0
    assert report.missing_outputs == report.marked_failed == 20
    assert report.unregistered_uploads == 7
    assert report.uploads_registered == 5 and report.invalid_upload_keys == 2
    assert all_keys(s3_store) == before - set(seeded.orphan_keys)

    assert statuses(database, seeded.missing) == {"failed": 20}
    assert statuses(database, seeded.live + seeded.expired) == {"completed": 820}
    with database.connection() as conn:
        messages = {r["error_message"] for r in conn.execute(
            "SELECT error_message FROM renders WHERE id = ANY(%s)", (seeded.missing,)).fetchall()}
        registered = conn.execute(
            "SELECT object_key, status, etag, requested_at FROM assets WHERE object_key = ANY(%s)",
            (seeded.unregistered_valid + seeded.unregistered_invalid,)).fetchall()
    assert messages == {OUTPUT_MISSING}
    by_key = {row["object_key"]: row for row in registered}
    for key in seeded.unregistered_valid:  # what the upload sensor picks up next cycle
        assert by_key[key]["status"] == "registered" and by_key[key]["requested_at"] is None
    assert {by_key[key]["status"] for key in seeded.unregistered_invalid} == {"invalid"}
    assert set(instance.get_dynamic_partitions("uploads")) == {partition_key_for(k) for k in seeded.unregistered_valid}

    again = reconcile_orphans(database, s3_store, instance, OrphanConfig(page_size=99), LOG,
                              now=datetime.now(UTC) + AFTER_GRACE)
    assert (again.orphan_objects, again.missing_outputs, again.unregistered_uploads) == (0, 0, 0)


def test_dry_run_reports_the_same_and_changes_nothing(database, s3_store, seeded, instance):
    rows, keys = snapshot(database), all_keys(s3_store)
    report = reconcile_orphans(database, s3_store, instance, OrphanConfig(dry_run=True), LOG,
                               now=datetime.now(UTC) + AFTER_GRACE)
    assert (report.orphan_objects, report.missing_outputs, report.unregistered_uploads) == (50, 20, 7)
    assert report.orphan_objects_deleted == report.marked_failed == report.uploads_registered == 0
    assert snapshot(database) == rows
    assert all_keys(s3_store) == keys
    assert instance.get_dynamic_partitions("uploads") == []


def test_scheduled_defaults_protect_young_objects(database, s3_store, seeded, instance):
    """Run as the schedule does: every object was written just now, so none is deleted and no
    upload registered; rows completed days ago whose objects are gone are still failed."""
    keys = all_keys(s3_store)
    result = orphan_reconciliation_job.execute_in_process(
        resources={"database": database, "object_store": s3_store}, instance=instance)
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    report = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert report["orphan_objects"] == report["orphan_objects_in_grace"] == 50
    assert report["orphan_objects_deleted"] == 0
    assert report["uploads_in_grace"] == 7 and report["uploads_registered"] == 0
    assert report["marked_failed"] == 20
    assert all_keys(s3_store) == keys


def test_grace_period_by_object_age_and_requeue_of_missing(database, tmp_path, instance):
    store = LocalObjectStore(root=str(tmp_path / "objects"))
    seeded = seed_standard(database, store)
    # Half of the orphan objects are two days old, the other half were written an hour ago.
    old = sorted(seeded.orphan_keys)[::2]
    for key in old:
        stamp = time.time() - 2 * 86400
        os.utime(tmp_path / "objects" / key, (stamp, stamp))
    report = reconcile_orphans(database, store, instance, OrphanConfig(requeue_missing=True), LOG)
    assert report.orphan_objects == 50
    assert report.orphan_objects_deleted == len(old) == 25
    assert report.orphan_objects_in_grace == 25
    assert not set(old) & all_keys(store)
    assert report.requeued == 20
    with database.connection() as conn:
        rows = conn.execute("SELECT status, attempt, metadata FROM renders WHERE id = ANY(%s)",
                            (seeded.missing,)).fetchall()
    assert {row["status"] for row in rows} == {"queued"}
    assert all(row["metadata"]["requeue_reason"] == "output missing" for row in rows)


def test_objects_of_a_render_rerendered_meanwhile_are_kept(database, s3_store, seeded, instance):
    """An archived render that is being rendered again (status `started`) owns its objects."""
    revived = seeded.archived[0]
    with database.connection() as conn:
        conn.execute("UPDATE renders SET status = 'started', started_at = now() WHERE id = %s", (revived,))
    reconcile_orphans(database, s3_store, instance, OrphanConfig(), LOG, now=datetime.now(UTC) + AFTER_GRACE)
    assert render_object_keys(revived)[1] in all_keys(s3_store)
