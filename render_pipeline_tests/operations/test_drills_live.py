"""The operator's drills on the real stack (`render-pipeline up`, live daemon), in the order an
operator meets them: pause for a deploy and resume, then the nightly backup, a lost database and
its restore.  Both drills share one stack, started once.

The stack uses the local store; `RENDER_PIPELINE_DRILL_S3=1` runs both drills on the S3 server
instead, and `RENDER_PIPELINE_DRILL_UPLOADS=200` runs the restore drill at a larger size (the
figures in docs/operations.md).  The default keeps both to a few small uploads.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from dagster import AssetKey, DagsterEventType, EventRecordsFilter

from render_pipeline.keys import asset_id_for, render_id_for, render_object_keys
from render_pipeline.maintenance.orphans import OrphanConfig, reconcile_orphans
from render_pipeline.resources.database import PostgresResource
from render_pipeline_tests.conftest import boto_client, s3_settings
from render_pipeline_tests.imaging.inputs import jpeg
from render_pipeline_tests.live_stack import LiveStack
from render_pipeline_tests.reliability.harness import audit

STYLES = ("duotone", "halftone", "pop-poster", "warhol-grid")
PRESET = "square-1024"
BEFORE = int(os.environ.get("RENDER_PIPELINE_DRILL_UPLOADS", "3"))
AFTER = max(2, BEFORE // 10)
TIMEOUT = 420 + 3 * (BEFORE + AFTER)  # generous: the suite shares two cores
LOG = logging.getLogger("drill")

# One stack for the module: the drills run in file order on one worker.
pytestmark = pytest.mark.xdist_group("operations-live-stack")


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory) -> Iterator[LiveStack]:
    env = {"RENDER_DEFAULT_PRESETS": PRESET, "RENDER_DEFAULT_STYLES": ",".join(STYLES)}
    if os.environ.get("RENDER_PIPELINE_DRILL_S3"):
        env |= s3_settings(request.getfixturevalue("s3_endpoint"), _module_bucket(request))
    with LiveStack(tmp_path_factory.mktemp("drills") / "home", env) as live:
        yield live


def _module_bucket(request) -> str:
    """A bucket that lives as long as the module's stack (`s3_bucket` is per test)."""
    name = f"drills-{uuid.uuid4().hex[:12]}"
    boto_client(request.getfixturevalue("s3_endpoint")).create_bucket(Bucket=name)
    return name


def _upload(stack: LiveStack, prefix: str, count: int, first: int = 0) -> list[str]:
    keys = [f"uploads/{prefix}{index:04d}/photo.jpg" for index in range(first, first + count)]
    for index, key in enumerate(keys, start=first):
        stack.put_upload(key, jpeg(160, 120, seed=index))
    return keys


def _wait_rendered(stack: LiveStack, valid_uploads: int, what: str) -> None:
    expected = valid_uploads * len(STYLES)

    def settled() -> bool:
        return (stack.scalar("SELECT count(*) FROM assets WHERE status = 'valid'") == valid_uploads
                and stack.scalar("SELECT count(*) FROM renders WHERE status = 'completed'") == expected
                and stack.scalar("SELECT count(*) FROM renders WHERE status <> 'completed'") == 0)

    stack.wait_until(settled, TIMEOUT, f"{what}: {valid_uploads} uploads valid and {expected} renders completed")


def test_uploads_sent_while_paused_are_all_rendered_once_after_resume(stack):
    _upload(stack, "before", 3)
    _wait_rendered(stack, 3, "the first renders")

    paused = stack.cli("pause", "--reason", "deploy drill", "--drain", "--timeout", "120")
    assert paused.returncode == 0, paused.stderr
    assert "paused since" in paused.stdout and "uploads_sensor" in paused.stdout
    assert "drained: no run in progress" in paused.stdout

    _upload(stack, "during", 3, first=10)
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

    _wait_rendered(stack, 6, "the renders of the paused uploads")
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


def test_backup_destroy_restore_drill(stack, tmp_path):
    backup_dir = tmp_path / "backups" / "nightly"
    backup_dir.parent.mkdir()
    earlier = [row["object_key"] for row in stack.query("SELECT object_key FROM assets")]
    valid = stack.scalar("SELECT count(*) FROM assets WHERE status = 'valid'")
    before = _upload(stack, "drill", BEFORE)
    _wait_rendered(stack, valid + BEFORE, "the uploads before the backup")

    started = time.monotonic()
    backup = stack.cli("backup", str(backup_dir))
    backup_seconds = time.monotonic() - started
    assert backup.returncode == 0, backup.stderr
    backup_work = json.loads((backup_dir / "manifest.json").read_text())["seconds"]

    refused = stack.cli("restore", str(backup_dir))  # the stack is up: nothing may change
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith("error: the stack is running (`render-pipeline up`, pid ")
    assert len(refused.stderr.strip().splitlines()) == 1
    again = stack.cli("backup", str(backup_dir))
    assert (again.returncode, again.stderr.strip()) == (
        1, f"error: {backup_dir} already exists: a backup is written into a new directory")

    after = _upload(stack, "drill", AFTER, first=BEFORE)
    _wait_rendered(stack, valid + BEFORE + AFTER, "the uploads after the backup")
    # One render from before the backup loses its objects (an expiry rule, a mistaken delete).
    lost_render = render_id_for(asset_id_for(before[0]), "duotone", PRESET)
    for key in render_object_keys(lost_render):
        stack.store.delete(key)

    stack.stop()
    shutil.rmtree(stack.home / "pgdata")  # both databases gone

    started = time.monotonic()
    restored = stack.cli("restore", str(backup_dir))
    restore_seconds = time.monotonic() - started
    assert restored.returncode == 0, restored.stderr
    print(restored.stdout)
    assert "reconciliation: 1 completed render(s) had lost their objects: failed and requeued" in restored.stdout
    assert f"the uploads sensor renders {AFTER} upload(s)" in restored.stdout
    assert f"{AFTER * len(STYLES) * 2} render object(s) have no row" in restored.stdout

    stack.start()
    _wait_rendered(stack, valid + BEFORE + AFTER, "the uploads after the restore")
    requeued = stack.query("SELECT status, attempt, metadata FROM renders WHERE id = %s", (lost_render,))[0]
    assert requeued["status"] == "completed" and requeued["metadata"]["requeue_reason"] == "output missing"
    _assert_nothing_lost_or_orphaned(stack, earlier + before + after)
    store = "s3" if os.environ.get("RENDER_PIPELINE_DRILL_S3") else "local"
    print(f"drill ({store} store, {valid + BEFORE} valid uploads at backup, {(valid + BEFORE) * len(STYLES)} "
          f"renders): backup {backup_seconds:.1f} s ({backup_work:.1f} s in the command's own work), "
          f"restore {restore_seconds:.1f} s")


def _assert_nothing_lost_or_orphaned(stack: LiveStack, uploads: list[str]) -> None:
    objects = {obj.key: obj.etag for obj in stack.store.iter_objects("")}
    database = PostgresResource(url=stack.app_url())
    try:
        found = audit(database, objects, styles=STYLES, presets=[PRESET])
        assert found.uploads == len(uploads) and not found.problems, found.summary()
        with stack.dagster_instance() as instance:
            report = reconcile_orphans(database, stack.store, instance, OrphanConfig(dry_run=True), LOG,
                                       now=datetime.now(UTC) + timedelta(hours=25))
    finally:
        database.close()
    valid = stack.scalar("SELECT count(*) FROM assets WHERE status = 'valid'")
    assert (report.orphan_objects, report.missing_outputs, report.unregistered_uploads) == (0, 0, 0), report
    assert report.render_objects_seen == 2 * valid * len(STYLES)
