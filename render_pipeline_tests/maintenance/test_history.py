"""Dagster history retention: the runs of archived renders and old maintenance runs are pruned
with their event logs; everything still referenced or running is kept."""

from __future__ import annotations

from datetime import timedelta

from dagster import DagsterRunStatus
from dagster._core.test_utils import create_run_for_test

from render_pipeline.maintenance.common import MAINTENANCE_KIND, RENDER_KIND
from render_pipeline.maintenance.history import prune_dagster_history
from render_pipeline.maintenance.jobs import dagster_history_retention_job
from render_pipeline_tests.maintenance.scenario import STYLES, insert_asset, insert_render


def test_history_of_archived_renders_is_pruned(database, instance):
    def run(status=DagsterRunStatus.SUCCESS, tags=RENDER_KIND):
        return create_run_for_test(instance, job_name="render_uploads", status=status, tags=tags).run_id

    of_archived, of_completed, of_flagged_failure, unreferenced = run(), run(), run(), run()
    still_running = run(DagsterRunStatus.STARTED)
    old_maintenance = run(tags=MAINTENANCE_KIND)
    untagged = create_run_for_test(instance, job_name="other", status=DagsterRunStatus.SUCCESS).run_id
    with database.transaction() as conn:
        asset = insert_asset(conn, "uploads/hist/a.png")
        insert_render(conn, asset, STYLES[0], "archived", age=timedelta(days=200), run_id=of_archived)
        insert_render(conn, asset, STYLES[1], "completed", age=timedelta(days=200), run_id=of_completed)
        flagged = insert_render(conn, asset, STYLES[2], "failed", age=timedelta(days=200), run_id=of_flagged_failure)
        conn.execute("UPDATE renders SET metadata = metadata || '{\"archived\": true}' WHERE id = %s", (flagged,))

    # Nothing is old enough under the default (90 days): the job deletes nothing.
    result = dagster_history_retention_job.execute_in_process(resources={"database": database}, instance=instance)
    assert result.success
    kept_all = {of_archived, of_completed, of_flagged_failure, unreferenced, still_running, old_maintenance, untagged}
    assert kept_all <= {r.run_id for r in instance.get_runs()}

    dry = prune_dagster_history(database, instance, render_older_than=timedelta(0),
                                maintenance_older_than=timedelta(0), dry_run=True, batch_size=2,
                                keep_run_ids=[result.run_id])
    assert (dry.render_runs_deleted, dry.render_runs_kept, dry.maintenance_runs_deleted) == (3, 1, 1)
    assert kept_all <= {r.run_id for r in instance.get_runs()}

    report = prune_dagster_history(database, instance, render_older_than=timedelta(0),
                                   maintenance_older_than=timedelta(0), dry_run=False, batch_size=2,
                                   keep_run_ids=[result.run_id])
    assert (report.render_runs_deleted, report.render_runs_kept, report.maintenance_runs_deleted) == (3, 1, 1)
    remaining = {r.run_id for r in instance.get_runs()}
    assert remaining == {of_completed, still_running, untagged, result.run_id}
    assert instance.get_records_for_run(of_archived).records == []  # its event log went with it
