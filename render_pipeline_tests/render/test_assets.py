"""Uploads → sensor → runs → renders, on real PostgreSQL and a real S3 endpoint."""

from __future__ import annotations

import hashlib
import io

from dagster import DagsterInstance
from PIL import Image

from render_pipeline.keys import asset_id_for, render_id_for, render_object_keys
from render_pipeline.render.events import render_asset_key
from render_pipeline.store import maintenance as maintenance_store
from render_pipeline_tests.conftest import make_s3_store
from render_pipeline_tests.orchestration_helpers import (
    TEST_PRESETS,
    definitions_for,
    execute,
    jpeg_bytes,
    png_bytes,
    tick,
)


def _run_all(defs, instance: DagsterInstance, result) -> list:
    outcomes = [execute(defs, instance, request) for request in result.run_requests or []]
    assert all(outcome.success for outcome in outcomes), [o.all_events[-1] for o in outcomes if not o.success]
    return outcomes


def _renders(database, object_key: str) -> list[dict]:
    with database.connection() as conn:
        return conn.execute(
            "SELECT * FROM renders WHERE asset_id = %s ORDER BY style_id, size_preset_id",
            (asset_id_for(object_key),),
        ).fetchall()


def test_upload_through_boto3_is_rendered_end_to_end(s3_env, boto, s3_bucket, database, instance):
    defs = definitions_for(s3_env)
    boto.put_object(Bucket=s3_bucket, Key="uploads/campaign-7/hero shot ü.jpg", Body=jpeg_bytes(seed=3))

    result = tick(defs, instance, "uploads_sensor")
    assert len(result.run_requests) == 1
    [outcome] = _run_all(defs, instance, result)

    # Depth-first: each style's chain finishes before the next style decodes (bounded memory).
    starts = [e.step_key for e in outcome.all_events if e.event_type_value == "STEP_START"]
    for i, step in enumerate(starts):
        if step.endswith("_decode"):
            style = step.rsplit("_decode", 1)[0]
            stages = ("preprocess", "quantize", "compose", "preview", "upload")
            assert starts[i + 1 : i + 6] == [f"{style}_{stage}" for stage in stages], starts

    rows = _renders(database, "uploads/campaign-7/hero shot ü.jpg")
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
    assert metadata["preview"].value.startswith("![preview](data:image/jpeg;base64,")
    pop_rows = [r for r in rows if r["style_id"] == "pop-poster"]
    assert sorted(metadata["output_keys"].value) == sorted(r["output_minio_key"] for r in pop_rows)


def test_a_second_tick_starts_nothing_and_a_key_before_the_cursor_is_found(s3_env, boto, s3_bucket, database, instance):
    defs = definitions_for(s3_env, presets=("play-feature",))
    boto.put_object(Bucket=s3_bucket, Key="uploads/m-middle/a.png", Body=png_bytes())
    first = tick(defs, instance, "uploads_sensor")
    assert len(first.run_requests) == 1
    _run_all(defs, instance, first)

    again = tick(defs, instance, "uploads_sensor", cursor=first.cursor)
    assert not again.run_requests

    # An id sorting *before* everything seen so far still gets picked up on the next cycle.
    boto.put_object(Bucket=s3_bucket, Key="uploads/a-early/b.png", Body=png_bytes(seed=5))
    later = tick(defs, instance, "uploads_sensor", cursor=again.cursor)
    assert [r.tags["dagster/asset_partition_range_start"] for r in later.run_requests] == ["a-early/b.png"]
    _run_all(defs, instance, later)
    assert {r["status"] for r in _renders(database, "uploads/a-early/b.png")} == {"completed"}


def test_corrupt_upload_is_invalid_while_the_next_one_renders(s3_env, boto, s3_bucket, database, instance):
    defs = definitions_for(s3_env, presets=("play-feature",))
    boto.put_object(Bucket=s3_bucket, Key="uploads/x1/broken.jpg", Body=jpeg_bytes()[:600])
    boto.put_object(Bucket=s3_bucket, Key="uploads/x2/fine.jpg", Body=jpeg_bytes(seed=9))
    boto.put_object(Bucket=s3_bucket, Key="uploads/no-folder.jpg", Body=b"whatever")
    boto.put_object(Bucket=s3_bucket, Key="uploads/x3/../escape.jpg", Body=b"whatever")

    result = tick(defs, instance, "uploads_sensor")
    assert len(result.run_requests) == 2  # the two partition keys, one run per run slot
    _run_all(defs, instance, result)

    with database.connection() as conn:
        assets = {r["object_key"]: r for r in conn.execute("SELECT * FROM assets").fetchall()}
    assert assets["uploads/x1/broken.jpg"]["status"] == "invalid"
    assert assets["uploads/x1/broken.jpg"]["error_code"] in ("truncated", "corrupt")
    assert assets["uploads/no-folder.jpg"]["error_message"].startswith("key has no {asset_id}/ folder")
    assert "'..'" in assets["uploads/x3/../escape.jpg"]["error_message"]
    assert assets["uploads/x2/fine.jpg"]["status"] == "valid"
    # Only the valid upload's partition is materialized; the broken one is not (its check says why).
    assert instance.get_materialized_partitions(render_asset_key("duotone")) == {"x2/fine.jpg"}
    assert _renders(database, "uploads/x1/broken.jpg") == []
    assert {r["status"] for r in _renders(database, "uploads/x2/fine.jpg")} == {"completed"}


def test_rerunning_a_completed_render_converges_to_the_same_objects_and_row(
    s3_env, boto, s3_bucket, database, instance
):
    defs = definitions_for(s3_env, presets=("square-1024",))
    boto.put_object(Bucket=s3_bucket, Key="uploads/r/1.jpg", Body=jpeg_bytes(seed=11))
    result = tick(defs, instance, "uploads_sensor")
    _run_all(defs, instance, result)
    before = {r["id"]: r["output_sha256"] for r in _renders(database, "uploads/r/1.jpg")}
    keys_before = sorted(o["Key"] for o in boto.list_objects_v2(Bucket=s3_bucket, Prefix="renders/")["Contents"])

    _run_all(defs, instance, result)  # the same request executed again (at-least-once)
    after = {r["id"]: r["output_sha256"] for r in _renders(database, "uploads/r/1.jpg")}
    keys_after = sorted(o["Key"] for o in boto.list_objects_v2(Bucket=s3_bucket, Prefix="renders/")["Contents"])
    assert before == after and keys_before == keys_after
    render_id = render_id_for(asset_id_for("uploads/r/1.jpg"), "duotone", "square-1024")
    assert render_object_keys(render_id)[0] in keys_after


def test_overwritten_upload_is_rendered_again(s3_env, boto, s3_bucket, database, instance):
    defs = definitions_for(s3_env, presets=("play-feature",))
    boto.put_object(Bucket=s3_bucket, Key="uploads/o/pic.jpg", Body=jpeg_bytes(seed=1))
    first = tick(defs, instance, "uploads_sensor")
    _run_all(defs, instance, first)
    sha_before = {r["id"]: r["output_sha256"] for r in _renders(database, "uploads/o/pic.jpg")}

    boto.put_object(Bucket=s3_bucket, Key="uploads/o/pic.jpg", Body=jpeg_bytes(seed=2))
    second = tick(defs, instance, "uploads_sensor", cursor=first.cursor)
    assert len(second.run_requests) == 1 and second.run_requests[0].run_key != first.run_requests[0].run_key
    _run_all(defs, instance, second)
    sha_after = {r["id"]: r["output_sha256"] for r in _renders(database, "uploads/o/pic.jpg")}
    assert sha_before.keys() == sha_after.keys()
    assert all(sha_before[k] != sha_after[k] for k in sha_before)


def test_storage_failure_is_retried_then_recorded_failed_and_requeue_completes_it(
    database, database_url, tmp_path, instance, monkeypatch
):
    root = tmp_path / "objects"
    env = {"DATABASE_URL": database_url, "LOCAL_STORE_ROOT": str(root), "RENDER_DEFAULT_STYLES": "duotone"}
    monkeypatch.setenv("DATABASE_URL", database_url)
    defs = definitions_for(env, presets=("play-feature",))
    (root / "uploads" / "f").mkdir(parents=True)
    (root / "uploads" / "f" / "photo.jpg").write_bytes(jpeg_bytes(seed=4))
    (root / "renders").write_bytes(b"")  # a file where the renders/ folder must go: every put fails

    result = tick(defs, instance, "uploads_sensor")
    [outcome] = [execute(defs, instance, request) for request in result.run_requests]
    assert outcome.success  # the batch goes on; only the render the store refused fails
    [row] = _renders(database, "uploads/f/photo.jpg")
    assert row["status"] == "failed" and row["dagster_run_id"] == outcome.run_id
    # the OS error without the file name (a temporary path), so such failures group by message
    assert row["error_message"] == "upload: NotADirectoryError: Not a directory", row["error_message"]

    # The fault clears; the operator requeues; the requeue sensor launches a run that completes it.
    (root / "renders").unlink()
    with database.connection() as conn:
        assert maintenance_store.requeue(conn, [row["id"]], reason="storage fixed") == [row["id"]]
    requeue = tick(defs, instance, "requeue_sensor")
    assert len(requeue.run_requests) == 1
    _run_all(defs, instance, requeue)
    [row] = _renders(database, "uploads/f/photo.jpg")
    assert row["status"] == "completed" and row["attempt"] == 2
    assert not tick(defs, instance, "requeue_sensor").run_requests


def test_launch_one_style_at_chosen_presets_as_from_the_ui(s3_env, boto, s3_bucket, database, instance):
    from dagster import AssetCheckKey, RunRequest

    defs = definitions_for(s3_env, presets=("play-feature",))
    boto.put_object(Bucket=s3_bucket, Key="uploads/ui/pick.jpg", Body=jpeg_bytes(seed=6))
    _run_all(defs, instance, tick(defs, instance, "uploads_sensor"))

    key = render_asset_key("halftone")
    request = RunRequest(
        partition_key="ui/pick.jpg",
        asset_selection=[key],
        run_config={"ops": {"renders__halftone": {"config": {"presets": ["square-1024", "play-phone"]}}}},
    )
    assert execute(defs, instance, request).success
    rows = {(r["style_id"], r["size_preset_id"]): r["status"] for r in _renders(database, "uploads/ui/pick.jpg")}
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
