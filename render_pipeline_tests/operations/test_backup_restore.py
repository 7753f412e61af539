"""The restore drill on the real stack: render, back up, render more, lose the databases,
restore, start again, and end with every upload rendered, nothing lost and nothing orphaned.

The drill runs on the local store; `RENDER_PIPELINE_DRILL_S3=1` runs it on the S3 server too
(another two minutes), and `RENDER_PIPELINE_DRILL_UPLOADS=200` at a larger size (the figures
in docs/operations.md).  The default keeps it to a few small uploads.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from datetime import UTC, datetime, timedelta

import pytest

from render_pipeline.keys import asset_id_for, render_id_for, render_object_keys
from render_pipeline.maintenance.orphans import OrphanConfig, reconcile_orphans
from render_pipeline.resources.database import PostgresResource
from render_pipeline_tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY
from render_pipeline_tests.imaging.inputs import jpeg
from render_pipeline_tests.live_stack import LiveStack
from render_pipeline_tests.reliability.harness import audit

STYLES = ("duotone", "halftone", "pop-poster", "warhol-grid")
PRESET = "square-1024"
BEFORE = int(os.environ.get("RENDER_PIPELINE_DRILL_UPLOADS", "3"))
AFTER = max(2, BEFORE // 10)
LOG = logging.getLogger("drill")


# The suite drills the local store (the pause drill runs on S3); RENDER_PIPELINE_DRILL_S3=1 adds S3 here.
@pytest.fixture(params=["local", "s3"] if os.environ.get("RENDER_PIPELINE_DRILL_S3") else ["local"])
def stack_env(request, tmp_path) -> dict[str, str]:
    env = {"RENDER_DEFAULT_PRESETS": PRESET}
    if request.param == "s3":
        env |= {"MINIO_ENDPOINT": request.getfixturevalue("s3_endpoint"), "MINIO_ACCESS_KEY": S3_ACCESS_KEY,
                "MINIO_SECRET_KEY": S3_SECRET_KEY, "MINIO_BUCKET": request.getfixturevalue("s3_bucket")}
    return env


def _upload(stack: LiveStack, count: int, first: int) -> list[str]:
    keys = [f"uploads/drill{index:04d}/photo.jpg" for index in range(first, first + count)]
    for index, key in enumerate(keys, start=first):
        stack.put_upload(key, jpeg(160, 120, seed=index))
    return keys


def _wait_rendered(stack: LiveStack, uploads: int, timeout: float) -> None:
    expected = uploads * len(STYLES)

    def settled() -> bool:
        return (stack.scalar("SELECT count(*) FROM assets WHERE status = 'valid'") == uploads
                and stack.scalar("SELECT count(*) FROM renders WHERE status = 'completed'") == expected
                and stack.scalar("SELECT count(*) FROM renders WHERE status <> 'completed'") == 0)

    stack.wait_until(settled, timeout, f"{uploads} uploads valid and {expected} renders completed")


def test_backup_destroy_restore_drill(stack_env, tmp_path):
    backup_dir = tmp_path / "backups" / "nightly"
    backup_dir.parent.mkdir()
    timeout = 420 + 3 * (BEFORE + AFTER)  # generous: the suite shares two cores
    with LiveStack(tmp_path / "home", stack_env) as stack:
        before = _upload(stack, BEFORE, 0)
        _wait_rendered(stack, BEFORE, timeout)

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

        after = _upload(stack, AFTER, BEFORE)
        _wait_rendered(stack, BEFORE + AFTER, timeout)
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
        _wait_rendered(stack, BEFORE + AFTER, timeout)
        requeued = stack.query("SELECT status, attempt, metadata FROM renders WHERE id = %s", (lost_render,))[0]
        assert requeued["status"] == "completed" and requeued["metadata"]["requeue_reason"] == "output missing"
        _assert_nothing_lost_or_orphaned(stack, before + after)
    print(f"drill ({stack_env.get('MINIO_ENDPOINT') and 's3' or 'local'} store, {BEFORE} uploads at backup, "
          f"{BEFORE * len(STYLES)} renders): backup {backup_seconds:.1f} s ({backup_work:.1f} s in the command's "
          f"own work), restore {restore_seconds:.1f} s")


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
    assert (report.orphan_objects, report.missing_outputs, report.unregistered_uploads) == (0, 0, 0), report
    assert report.render_objects_seen == 2 * len(uploads) * len(STYLES)
