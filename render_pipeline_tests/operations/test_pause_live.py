"""Pause and resume on the real stack (`render-pipeline up`, live daemon, S3 server): uploads
arriving while paused wait, then every one is rendered once after resume."""

from __future__ import annotations

import time

from dagster import AssetKey, DagsterEventType, EventRecordsFilter

from render_pipeline_tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY
from render_pipeline_tests.imaging.inputs import jpeg
from render_pipeline_tests.live_stack import LiveStack

STYLES = ("duotone",)
STACK_ENV = {"RENDER_DEFAULT_PRESETS": "square-1024", "RENDER_DEFAULT_STYLES": ",".join(STYLES)}


def _completed(stack: LiveStack) -> int:
    return stack.scalar("SELECT count(*) FROM renders WHERE status = 'completed'")


def test_uploads_sent_while_paused_are_all_rendered_once_after_resume(tmp_path, s3_endpoint, s3_bucket):
    s3 = {"MINIO_ENDPOINT": s3_endpoint, "MINIO_ACCESS_KEY": S3_ACCESS_KEY, "MINIO_SECRET_KEY": S3_SECRET_KEY,
          "MINIO_BUCKET": s3_bucket}
    with LiveStack(tmp_path / "home", env={**STACK_ENV, **s3}) as stack:
        for n in range(3):
            stack.put_upload(f"uploads/before{n}/photo.jpg", jpeg(seed=n))
        stack.wait_until(lambda: _completed(stack) == 3 * len(STYLES), 240, "the first renders")

        paused = stack.cli("pause", "--reason", "deploy drill", "--drain", "--timeout", "120")
        assert paused.returncode == 0, paused.stderr
        assert "paused since" in paused.stdout and "uploads_sensor" in paused.stdout
        assert "drained: no run in progress" in paused.stdout

        for n in range(3):
            stack.put_upload(f"uploads/during{n}/photo.jpg", jpeg(seed=10 + n))
        stack.put_upload("uploads/during-bad/broken.jpg", b"\xff\xd8\xff\xe0 not a whole JPEG")
        time.sleep(12)  # over two sensor intervals: a live sensor would have claimed them by now
        assert stack.scalar("SELECT count(*) FROM assets WHERE object_key LIKE 'uploads/during%%'") == 0

        again = stack.cli("pause")
        assert again.returncode == 1 and "already paused since" in again.stderr and "deploy drill" in again.stderr
        doctor = stack.cli("doctor")
        assert "PAUSED since" in doctor.stdout and "deploy drill" in doctor.stdout

        resumed = stack.cli("resume")
        assert resumed.returncode == 0, resumed.stderr
        assert stack.cli("resume").returncode == 1  # not paused any more: one clear line, nothing changed

        stack.wait_until(lambda: _completed(stack) == 6 * len(STYLES), 300, "the renders of the paused uploads")
        stack.wait_until(lambda: stack.scalar("SELECT status FROM assets WHERE object_key LIKE '%%broken.jpg'")
                         == "invalid", 120, "the broken upload's refusal")
        rows = stack.query("SELECT status, attempt FROM renders")
        assert {(row["status"], row["attempt"]) for row in rows} == {("completed", 1)}
        with stack.dagster_instance() as instance:
            for style in STYLES:
                events = instance.get_event_records(EventRecordsFilter(
                    DagsterEventType.ASSET_MATERIALIZATION, asset_key=AssetKey(["renders", style])))
                partitions = [event.partition_key for event in events]
                assert sorted(partitions) == sorted(set(partitions)) and len(partitions) == 6  # each once
