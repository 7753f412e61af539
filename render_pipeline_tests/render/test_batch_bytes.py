"""Batching is an optimisation, never a change of meaning: a render's bytes are the same from
the sensor's run at the default presets, from `render()` alone, and from a one-preset requeue."""

from __future__ import annotations

import dataclasses

from dagster import Definitions
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from render_pipeline import imaging
from render_pipeline.render.assets import build_render_asset
from render_pipeline.render.events import render_asset_key
from render_pipeline.render.uploads import build_uploads_asset
from render_pipeline.store import maintenance as maintenance_store
from render_pipeline_tests.conftest import make_s3_store
from render_pipeline_tests.orchestration_helpers import (
    definitions_for,
    execute,
    jpeg_bytes,
    renders_of_upload,
    run_all,
    tick,
)

KEY = "uploads/big/photo.jpg"


def test_a_large_jpeg_renders_the_same_bytes_in_a_batch_alone_and_requeued(
    s3_env, boto, s3_bucket, database, instance
):
    # 4000x3000: square-1024 alone decodes at half scale, iphone-6.9 at full scale, so a
    # batch rule taken from all presets would change square-1024's pixels.
    data = jpeg_bytes(4000, 3000, seed=5)
    assert len({imaging.draft_scale(imaging.read_info(data), imaging.get_preset(p))
                for p in imaging.DEFAULT_PRESET_IDS}) == 2
    defs = definitions_for(s3_env, presets=imaging.DEFAULT_PRESET_IDS)
    boto.put_object(Bucket=s3_bucket, Key=KEY, Body=data)
    run_all(defs, instance, tick(defs, instance, "uploads_sensor"))

    store = make_s3_store(s3_env["MINIO_ENDPOINT"], s3_bucket)
    rows = renders_of_upload(database, KEY)
    assert len(rows) == len(imaging.STYLES) * len(imaging.DEFAULT_PRESET_IDS)
    for row in rows:
        alone = imaging.render(data, row["style_id"], row["size_preset_id"])
        assert store.get(row["output_minio_key"]) == alone.output_png, (row["style_id"], row["size_preset_id"])
        assert store.get(row["preview_minio_key"]) == alone.preview_jpeg
        assert row["render_metadata"]["pixels_sha256"] == alone.metadata["pixels_sha256"]

    # One preset of one style requeued: a run of that preset alone writes the same bytes.
    [square] = [r for r in rows if (r["style_id"], r["size_preset_id"]) == ("pop-poster", "square-1024")]
    with database.connection() as conn:
        maintenance_store.requeue(conn, [square["id"]], reason="reproduce", from_statuses=("completed",))
    [request] = tick(defs, instance, "requeue_sensor").run_requests
    assert execute(defs, instance, request).success
    [again] = [r for r in renders_of_upload(database, KEY) if r["id"] == square["id"]]
    assert again["attempt"] == square["attempt"] + 1 and again["dagster_run_id"] != square["dagster_run_id"]
    assert again["output_sha256"] == square["output_sha256"]
    assert store.get(again["output_minio_key"]) == imaging.render(data, "pop-poster", "square-1024").output_png


def test_renders_are_fresh_until_their_style_version_changes(s3_env, boto, s3_bucket, database, instance):
    """The per-partition materializations carry Dagster's provenance, so the UI's staleness
    (Dagster's own resolver) behaves as for materializations Dagster makes itself."""
    defs = definitions_for(s3_env, presets=("play-feature",))
    boto.put_object(Bucket=s3_bucket, Key=KEY, Body=jpeg_bytes(seed=8))
    run_all(defs, instance, tick(defs, instance, "uploads_sensor"))
    partition = KEY.removeprefix("uploads/")
    spec = imaging.get_style("halftone")

    def status(definitions: Definitions) -> StaleStatus:
        resolver = CachingStaleStatusResolver(instance, definitions.resolve_asset_graph(),
                                              loading_context=LoadingContextForTest(instance))
        return resolver.get_status(render_asset_key(spec.id), partition)

    assert status(defs) == StaleStatus.FRESH
    bumped = Definitions(assets=[build_uploads_asset(["play-feature"]),
                                 build_render_asset(dataclasses.replace(spec, version=spec.version + 1), ["play-feature"])],
                         resources=defs.resources)
    assert status(bumped) == StaleStatus.STALE
