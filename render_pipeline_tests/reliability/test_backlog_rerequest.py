"""A backlog longer than the re-request window (10 minutes) does not request its waiting uploads
again: found by the live soak, where 2 000 uploads queued for over 10 minutes and the upload
sensor requested 317 of them a second time, one run each, while their first runs still waited
for a slot.  A version whose run is queued or in progress is its run's; once that run has
ended without validating it, the next cycle requests it again, as before."""

from __future__ import annotations

import pytest
from dagster import DagsterRunStatus

from render_pipeline_tests.orchestration_helpers import definitions_for, jpeg_bytes
from render_pipeline_tests.reliability.harness import Pipeline

pytestmark = pytest.mark.reliability

PRESETS = ("play-feature",)


def test_an_upload_whose_run_is_still_queued_past_the_window_is_not_requested_again(
    s3_env, boto, s3_bucket, database, instance
):
    defs = definitions_for(s3_env, presets=PRESETS)
    boto.put_object(Bucket=s3_bucket, Key="uploads/w/p.jpg", Body=jpeg_bytes(64, 48, seed=3))
    pipeline = Pipeline(defs, instance)
    [request] = pipeline.tick()
    # The run as it waits for a slot (NOT_STARTED: a QUEUED run needs the daemon's code origin).
    queued = instance.create_run_for_job(defs.resolve_job_def("render_uploads"),
                                         tags={**request.tags, "dagster/run_key": request.run_key})
    assert queued.status == DagsterRunStatus.NOT_STARTED
    with database.connection() as conn:  # the window passes while the run waits for a slot
        conn.execute("UPDATE assets SET requested_at = requested_at - interval '1 hour'")

    assert pipeline.tick() == []
    instance.report_run_failed(instance.get_run_by_id(queued.run_id))
    [again] = pipeline.tick()
    assert again.run_key != request.run_key
    assert again.tags["dagster/asset_partition_range_start"] == request.tags["dagster/asset_partition_range_start"]
