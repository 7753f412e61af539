"""The `renders/<style>` assets on real PostgreSQL and a real S3 endpoint: an upload rendered end
to end, a re-run converging on the same objects and row, one style launched at chosen presets."""

from __future__ import annotations

import hashlib
import io

import numpy as np
from dagster import AssetCheckKey, RunRequest
from PIL import Image

from render_pipeline.keys import asset_id_for, render_id_for, render_object_keys
from render_pipeline.render.events import render_asset_key
from render_pipeline.render.metadata import THUMBNAIL_LONG_SIDE
from render_pipeline_tests.conftest import make_s3_store
from render_pipeline_tests.orchestration_helpers import (
    TEST_PRESETS,
    definitions_for,
    execute,
    inline_jpeg,
    jpeg_bytes,
    renders_of_upload,
    run_all,
    tick,
)


def test_upload_through_boto3_is_rendered_end_to_end(s3_env, boto, s3_bucket, database, instance):
    defs = definitions_for(s3_env)
    boto.put_object(Bucket=s3_bucket, Key="uploads/campaign-7/hero shot ü.jpg", Body=jpeg_bytes(seed=3))

    result = tick(defs, instance, "uploads_sensor")
    assert len(result.run_requests) == 1
    [outcome] = run_all(defs, instance, result)

    # Depth-first: each style's chain finishes before the next style decodes (bounded memory).
    starts = [e.step_key for e in outcome.all_events if e.event_type_value == "STEP_START"]
    for i, step in enumerate(starts):
        if step.endswith("_decode"):
            style = step.rsplit("_decode", 1)[0]
            stages = ("preprocess", "quantize", "compose", "preview", "upload")
            assert starts[i + 1 : i + 6] == [f"{style}_{stage}" for stage in stages], starts

    rows = renders_of_upload(database, "uploads/campaign-7/hero shot ü.jpg")
    assert len(rows) == 4 * len(TEST_PRESETS)
    assert {r["status"] for r in rows} == {"completed"}
    store = make_s3_store(s3_env["MINIO_ENDPOINT"], s3_bucket)
    for row in rows:
        output = store.get(row["output_minio_key"])
        assert hashlib.sha256(output).hexdigest() == row["output_sha256"]
        with Image.open(io.BytesIO(output)) as image:
            assert image.size == (row["width"], row["height"])
        assert store.head(row["preview_minio_key"]) is not None
        assert row["dagster_run_id"] and row["algorithm_config_snapshot"] is not None
        assert set(row["render_metadata"]["timings_ms"]) >= {"decode", "preprocess", "quantize", "compose", "upload"}

    with database.connection() as conn:
        asset = conn.execute("SELECT * FROM assets").fetchone()
    assert asset["status"] == "valid" and asset["format"] == "JPEG" and (asset["width"], asset["height"]) == (320, 240)

    # The UI sees the partition's own materialization per style, with its preview.
    event = instance.get_latest_materialization_event(render_asset_key("pop-poster"))
    assert event.dagster_event.partition == "campaign-7/hero shot ü.jpg"
    metadata = event.asset_materialization.metadata
    pop_rows = [r for r in rows if r["style_id"] == "pop-poster"]
    assert sorted(metadata["output_keys"].value) == sorted(r["output_minio_key"] for r in pop_rows)
    _assert_inline_preview_shows(metadata["preview"].value, pop_rows, rows, store)


def _assert_inline_preview_shows(markdown: str, style_rows: list[dict], rows: list[dict], store) -> None:
    """The inline thumbnail is the preview object the markdown names, one of this style's renders
    of this upload: closer to it than to another style's preview at the same preset."""
    [named] = [r for r in style_rows if f"`{r['preview_minio_key']}`" in markdown]
    [other] = [r for r in rows if r["style_id"] == "duotone" and r["size_preset_id"] == named["size_preset_id"]]
    thumbnail = inline_jpeg(markdown)
    assert max(thumbnail.size) == THUMBNAIL_LONG_SIDE

    def distance(preview_key: str) -> float:
        with Image.open(io.BytesIO(store.get(preview_key))) as preview:
            assert abs(preview.width / preview.height - thumbnail.width / thumbnail.height) < 0.02
            expected = preview.convert("RGB").resize(thumbnail.size, Image.Resampling.BOX)
        return float(np.abs(np.asarray(thumbnail, dtype=float) - np.asarray(expected, dtype=float)).mean())

    assert distance(named["preview_minio_key"]) < 8 < distance(other["preview_minio_key"])


def test_rerunning_a_completed_render_converges_to_the_same_objects_and_row(
    s3_env, boto, s3_bucket, database, instance
):
    defs = definitions_for(s3_env, presets=("square-1024",))
    boto.put_object(Bucket=s3_bucket, Key="uploads/r/1.jpg", Body=jpeg_bytes(seed=11))
    result = tick(defs, instance, "uploads_sensor")
    run_all(defs, instance, result)
    before = {r["id"]: r["output_sha256"] for r in renders_of_upload(database, "uploads/r/1.jpg")}
    keys_before = sorted(o["Key"] for o in boto.list_objects_v2(Bucket=s3_bucket, Prefix="renders/")["Contents"])

    run_all(defs, instance, result)  # the same request executed again (at-least-once)
    after = {r["id"]: r["output_sha256"] for r in renders_of_upload(database, "uploads/r/1.jpg")}
    keys_after = sorted(o["Key"] for o in boto.list_objects_v2(Bucket=s3_bucket, Prefix="renders/")["Contents"])
    assert before == after and keys_before == keys_after
    render_id = render_id_for(asset_id_for("uploads/r/1.jpg"), "duotone", "square-1024")
    assert render_object_keys(render_id)[0] in keys_after


def test_launch_one_style_at_chosen_presets_as_from_the_ui(s3_env, boto, s3_bucket, database, instance):
    defs = definitions_for(s3_env, presets=("play-feature",))
    boto.put_object(Bucket=s3_bucket, Key="uploads/ui/pick.jpg", Body=jpeg_bytes(seed=6))
    run_all(defs, instance, tick(defs, instance, "uploads_sensor"))

    key = render_asset_key("halftone")
    request = RunRequest(
        partition_key="ui/pick.jpg",
        asset_selection=[key],
        run_config={"ops": {"renders__halftone": {"config": {"presets": ["square-1024", "play-phone"]}}}},
    )
    assert execute(defs, instance, request).success
    rows = {(r["style_id"], r["size_preset_id"]): r["status"] for r in renders_of_upload(database, "uploads/ui/pick.jpg")}
    assert rows[("halftone", "square-1024")] == rows[("halftone", "play-phone")] == "completed"
    assert ("pop-poster", "square-1024") not in rows

    check = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(key, "presets_complete"), limit=1
    )[0]
    assert check.evaluation.passed

    unknown = RunRequest(
        partition_key="ui/pick.jpg", asset_selection=[key],
        run_config={"ops": {"renders__halftone": {"config": {"presets": ["iphone-99"]}}}},
    )
    outcome = execute(defs, instance, unknown)
    assert not outcome.success
    [failure] = [e for e in outcome.all_events if e.is_step_failure]
    assert "unknown size preset(s) ['iphone-99']" in failure.event_specific_data.error.to_string()
