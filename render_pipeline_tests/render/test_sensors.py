"""The sensors of the render slice.  The uploads sensor: how a tick groups new uploads into
runs, a listing cycle that finds every key once whatever its sort order, an overwritten object
rendered again.  The run-failure sensor: each unfinished render of a failed run is failed with
the step of its own style that failed and that step's error, not with the run's first failure."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from render_pipeline.keys import asset_id_for, render_id_for
from render_pipeline.render import sensors
from render_pipeline.store.uploads import UploadSighting
from render_pipeline_tests.orchestration_helpers import (
    definitions_for,
    jpeg_bytes,
    png_bytes,
    renders_of_upload,
    run_all,
    tick,
)
from render_pipeline_tests.reliability.harness import Pipeline


MiB = 1024 * 1024


def _sightings(count: int, size: int = 1000) -> list[UploadSighting]:
    return [UploadSighting(uuid.uuid4(), f"uploads/u{i}/p.jpg", f"u{i}/p.jpg", f"e{i}", size) for i in range(count)]


@pytest.mark.parametrize(("uploads", "size", "sizes"), [
    (1, 1000, [1]),
    (2, 1000, [1, 1]),  # one run per run slot, so both cores render
    (5, 1000, [3, 2]),
    (64, 1000, [32, 32]),
    (200, 1000, [100, 100]),
    (129, 1000, [65, 64]),  # no run over MAX_UPLOADS_PER_SENSOR_RUN
    (257, 1000, [65, 64, 64, 64]),  # three runs' worth, rounded up to whole rounds of the two slots
    (64, 4 * MiB, [32, 32]),  # 12 MP photos: 256 MiB of sources, within two runs
    (64, 10 * MiB, [16, 16, 16, 16]),  # 640 MiB: three runs' worth of scratch, in two rounds
])
def test_a_burst_is_split_into_near_equal_runs_in_whole_rounds_of_the_run_slots(
    uploads: int, size: int, sizes: list[int]
) -> None:
    sightings = _sightings(uploads, size)
    batches = sensors.split_into_runs(sightings, lambda s: s.size)
    assert [len(batch) for batch in batches] == sizes
    assert [s for batch in batches for s in batch] == sightings  # contiguous, in order: ranged runs
    assert max(sizes) <= sensors.MAX_UPLOADS_PER_SENSOR_RUN
    assert max(sizes) * size <= 1.25 * sensors.MAX_SOURCE_BYTES_PER_SENSOR_RUN


def test_a_second_tick_starts_nothing_and_a_key_before_the_cursor_is_found(s3_env, boto, s3_bucket, database, instance):
    defs = definitions_for(s3_env, presets=("play-feature",))
    boto.put_object(Bucket=s3_bucket, Key="uploads/m-middle/a.png", Body=png_bytes())
    first = tick(defs, instance, "uploads_sensor")
    assert len(first.run_requests) == 1
    run_all(defs, instance, first)

    again = tick(defs, instance, "uploads_sensor", cursor=first.cursor)
    assert not again.run_requests

    # An id sorting *before* everything seen so far still gets picked up on the next cycle.
    boto.put_object(Bucket=s3_bucket, Key="uploads/a-early/b.png", Body=png_bytes(seed=5))
    later = tick(defs, instance, "uploads_sensor", cursor=again.cursor)
    assert [r.tags["dagster/asset_partition_range_start"] for r in later.run_requests] == ["a-early/b.png"]
    run_all(defs, instance, later)
    assert {r["status"] for r in renders_of_upload(database, "uploads/a-early/b.png")} == {"completed"}


def test_overwritten_upload_is_rendered_again(s3_env, boto, s3_bucket, database, instance):
    defs = definitions_for(s3_env, presets=("play-feature",))
    boto.put_object(Bucket=s3_bucket, Key="uploads/o/pic.jpg", Body=jpeg_bytes(seed=1))
    first = tick(defs, instance, "uploads_sensor")
    run_all(defs, instance, first)
    sha_before = {r["id"]: r["output_sha256"] for r in renders_of_upload(database, "uploads/o/pic.jpg")}

    boto.put_object(Bucket=s3_bucket, Key="uploads/o/pic.jpg", Body=jpeg_bytes(seed=2))
    second = tick(defs, instance, "uploads_sensor", cursor=first.cursor)
    assert len(second.run_requests) == 1 and second.run_requests[0].run_key != first.run_requests[0].run_key
    run_all(defs, instance, second)
    sha_after = {r["id"]: r["output_sha256"] for r in renders_of_upload(database, "uploads/o/pic.jpg")}
    assert sha_before.keys() == sha_after.keys()
    assert all(sha_before[k] != sha_after[k] for k in sha_before)


# Two styles' decode steps fail for real: the database gives up waiting for row locks the test
# holds (``lock_timeout``), while a third style renders.
FAILED_RUN_STYLES = ("duotone", "halftone", "warhol-grid")
LOCKED_STYLES = ("halftone", "warhol-grid")
LOCKED_KEY = "uploads/lk/photo.jpg"


def test_each_render_of_a_failed_run_names_its_own_styles_failed_step(
    database, database_url, tmp_path, instance, monkeypatch
):
    root = tmp_path / "objects"
    env = {"DATABASE_URL": database_url, "LOCAL_STORE_ROOT": str(root), "RENDER_DEFAULT_STYLES": ",".join(FAILED_RUN_STYLES)}
    monkeypatch.setenv("DATABASE_URL", database_url)
    defs = definitions_for(env, presets=("play-feature",))
    (root / "uploads" / "lk").mkdir(parents=True)
    (root / LOCKED_KEY).write_bytes(jpeg_bytes(64, 48, seed=3))
    [request] = tick(defs, instance, "uploads_sensor").run_requests
    # The run renders two styles at a second preset, whose rows this test holds locked.
    asset_id = asset_id_for(LOCKED_KEY)
    locked_ids = [render_id_for(asset_id, style, "square-1024") for style in LOCKED_STYLES]
    with psycopg.connect(database_url, autocommit=True) as admin:
        for render_id, style in zip(locked_ids, LOCKED_STYLES):
            admin.execute("INSERT INTO renders (id, asset_id, style_id, size_preset_id, status, error_message) "
                          "VALUES (%s, %s, %s, 'square-1024', 'failed', 'earlier failure')", (render_id, asset_id, style))
        dbname = admin.info.dbname
        admin.execute(sql.SQL("ALTER DATABASE {} SET lock_timeout = '200ms'").format(sql.Identifier(dbname)))
    config = {"ops": {f"renders__{style.replace('-', '_')}": {"config": {"presets": ["square-1024"]}}
                      for style in LOCKED_STYLES}}
    pipeline = Pipeline(defs, instance)
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT id FROM renders WHERE id = ANY(%s) FOR UPDATE", (locked_ids,))
        outcome = pipeline._execute_only(request.with_replaced_attrs(run_config=config, run_key=None))
        holder.rollback()
    assert not outcome.success
    pipeline.notify_failure(outcome.run_id)

    with database.connection() as conn:
        rows = {(r["style_id"], r["size_preset_id"]): r for r in conn.execute("SELECT * FROM renders").fetchall()}
    assert rows[("duotone", "play-feature")]["status"] == "completed"
    for style in LOCKED_STYLES:
        row = rows[(style, "play-feature")]  # queued by the run's `uploads` step, never started
        step = f"renders__{style.replace('-', '_')}.{style.replace('-', '_')}_decode"
        assert row["status"] == "failed" and row["error_message"].startswith(f"run failed in step {step}: "), row
        assert "lock timeout" in row["error_message"] and row["error_message"].endswith(f"(run {outcome.run_id})")
