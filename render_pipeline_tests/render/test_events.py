"""A ranged run reports every upload partition on its own: its materialization, metadata and
checks, read back from the Dagster instance (what the UI shows), whatever the batch.  Render
asset keys are the catalogue's style ids (`renders/pop-poster`), while the graph and op names
Dagster derives from them stay Python identifiers (`renders__pop_poster`)."""

from __future__ import annotations

import hashlib
import io

import psycopg
import pytest
from dagster import AssetCheckKey, AssetKey, AssetRecordsFilter, AssetSelection, RunRequest, instance_for_test
from PIL import Image
from psycopg import sql
from psycopg.conninfo import make_conninfo

from render_pipeline import imaging
from render_pipeline.definitions import build_definitions
from render_pipeline.render.events import PRESETS_CHECK, render_asset_key
from render_pipeline.render.job import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, RENDER_RUN_TAGS
from render_pipeline.resources.embedded_postgres import dagster_storage_url
from render_pipeline.settings import load_settings
from render_pipeline_tests.orchestration_helpers import (
    definitions_for,
    execute,
    inline_jpeg,
    jpeg_bytes,
    png_bytes,
    tick,
)

PRESETS = ("play-feature", "square-1024")
UPLOADS = {
    "b1/fine.jpg": jpeg_bytes(seed=1),
    "b2/broken.jpg": jpeg_bytes(seed=2)[:600],
    "b3/notes.txt": b"not an image\n",
    "b4/fine.png": png_bytes(seed=4),
}
RENDERED = {"b1/fine.jpg", "b4/fine.png"}


@pytest.fixture(autouse=True)
def batched_event_writes(monkeypatch):
    """As every launch path runs them (render-pipeline up, deploy/): Dagster's batched writes on."""
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "64")


def _one_ranged_run(defs, instance, boto, bucket):
    """Register the uploads as the sensor does, then render all of them in one ranged run."""
    for key, body in UPLOADS.items():
        boto.put_object(Bucket=bucket, Key=f"uploads/{key}", Body=body)
    requests = tick(defs, instance, "uploads_sensor").run_requests
    keys = instance.get_dynamic_partitions("uploads")
    assert sorted(keys) == sorted(UPLOADS)
    request = RunRequest(
        asset_selection=requests[0].asset_selection,
        tags={**RENDER_RUN_TAGS, PARTITION_RANGE_START_TAG: keys[0], PARTITION_RANGE_END_TAG: keys[-1]},
    )
    outcome = execute(defs, instance, request)
    assert outcome.success
    return outcome


def _latest_evaluations(instance, key: AssetKey, check: str) -> dict:
    records = instance.event_log_storage.get_asset_check_execution_history(AssetCheckKey(key, check), limit=100)
    latest = {}
    for record in records:  # newest first
        latest.setdefault(record.evaluation.partition, record.evaluation)
    return latest


def _rows(database) -> dict:
    with database.connection() as conn:
        return {
            (r["partition_key"], r["style_id"], r["size_preset_id"]): r
            for r in conn.execute(
                "SELECT r.*, a.partition_key FROM renders r JOIN assets a ON a.id = r.asset_id"
            ).fetchall()
        }


def test_each_render_partition_has_its_own_materialization_preview_and_check(
    s3_env, boto, s3_bucket, database, instance
):
    defs = definitions_for(s3_env, presets=PRESETS)
    outcome = _one_ranged_run(defs, instance, boto, s3_bucket)
    rows = _rows(database)

    for style in imaging.STYLES:
        key = render_asset_key(style)
        # Only uploads that rendered are materialized; no partition carries another's facts.
        assert instance.get_materialized_partitions(key) == RENDERED
        for partition in RENDERED:
            event = _latest_materialization(instance, key, partition)
            assert event.run_id == outcome.run_id
            metadata = event.asset_materialization.metadata
            mine = [rows[(partition, style, p)] for p in PRESETS]
            assert sorted(metadata["output_keys"].value) == sorted(r["output_minio_key"] for r in mine)
            assert all(str(r["id"]) in metadata["renders"].value for r in mine)
            assert metadata["palette"].value == " ".join(mine[0]["render_metadata"]["palette"])
            assert max(inline_jpeg(metadata["preview"].value).size) == 256
            # Dagster's own provenance: this code version, rendered from this upload's validation.
            tags = event.asset_materialization.tags
            assert tags["dagster/code_version"] == f"{style}@{imaging.get_style(style).version}"
            assert tags["dagster/input_event_pointer/uploads"].isdigit()

        checks = _latest_evaluations(instance, key, "presets_complete")
        assert set(checks) == set(UPLOADS)
        assert {p for p, e in checks.items() if e.passed} == RENDERED
        assert all(checks[p].target_materialization_data is not None for p in RENDERED)
        for partition in set(UPLOADS) - RENDERED:
            with database.connection() as conn:
                reason = conn.execute("SELECT error_message FROM assets WHERE partition_key = %s",
                                      (partition,)).fetchone()["error_message"]
            assert checks[partition].description == f"the upload is invalid: {reason}"
            assert checks[partition].metadata["completed"].value == 0


def test_each_upload_partition_shows_its_own_validation(s3_env, boto, s3_bucket, database, instance):
    defs = definitions_for(s3_env, presets=("play-feature",))
    _one_ranged_run(defs, instance, boto, s3_bucket)

    for partition, body in UPLOADS.items():
        metadata = _latest_materialization(instance, AssetKey("uploads"), partition).asset_materialization.metadata
        assert metadata["object_key"].value == f"uploads/{partition}"
        assert metadata["sha256"].value == hashlib.sha256(body).hexdigest()
        if partition in RENDERED:
            assert metadata["status"].value == "valid" and "reason" not in metadata
            with Image.open(io.BytesIO(body)) as image:
                assert metadata["dimensions"].value == f"{image.width}×{image.height}"
        else:
            assert metadata["status"].value == "invalid"
    assert _metadata_reason(instance, "b2/broken.jpg").startswith(("truncated: ", "corrupt: "))
    assert _metadata_reason(instance, "b3/notes.txt") == "unsupported_format: the file is text, not an image"

    checks = _latest_evaluations(instance, AssetKey("uploads"), "upload_is_valid")
    assert {p for p, e in checks.items() if e.passed} == RENDERED
    assert checks["b3/notes.txt"].description == "unsupported_format: the file is text, not an image"


def test_a_steps_render_materializations_are_written_as_one_batch(
    s3_env, boto, s3_bucket, pg_admin_url, tmp_path, monkeypatch
):
    """On Dagster's PostgreSQL storage: the rows one statement inserts share a transaction id
    (``xmin``), so one id for the step's materializations means one batched write.  Without
    DAGSTER_EVENT_BATCH_SIZE each is written on its own — the contrast shows the check can tell."""
    defs = definitions_for({**s3_env, "RENDER_DEFAULT_STYLES": "duotone"}, presets=("play-feature",))
    writes = {}
    for batch_size in ("64", "0"):
        monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", batch_size)
        database = f"dagster_batch{batch_size}_{tmp_path.name[-8:].lower()}".replace("-", "_")
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        url = dagster_storage_url(pg_admin_url, database)
        storage = {"custom": {"module": "render_pipeline.dagster_storage", "class": "PooledPostgresStorage",
                              "config": {"postgres_url": url}}}
        for i in range(3):
            boto.put_object(Bucket=s3_bucket, Key=f"uploads/batch{batch_size}/{i}.jpg", Body=jpeg_bytes(64, 48, seed=i))
        (tmp_path / batch_size).mkdir()
        with instance_for_test(overrides={"storage": storage}, temp_dir=str(tmp_path / batch_size)) as instance:
            selection = tick(defs, instance, "uploads_sensor").run_requests[0].asset_selection
            keys = instance.get_dynamic_partitions("uploads")
            request = RunRequest(asset_selection=selection, tags={
                **RENDER_RUN_TAGS, PARTITION_RANGE_START_TAG: keys[0], PARTITION_RANGE_END_TAG: keys[-1]})
            assert execute(defs, instance, request).success
            assert len(instance.get_materialized_partitions(render_asset_key("duotone"))) == 3
        with psycopg.connect(make_conninfo(pg_admin_url, dbname=database)) as conn:
            writes[batch_size] = conn.execute(
                "SELECT count(*), count(DISTINCT xmin::text) FROM event_logs "
                "WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key = %s",
                (render_asset_key("duotone").to_string(),),
            ).fetchone()
    assert writes == {"64": (3, 1), "0": (3, 3)}


def _metadata_reason(instance, partition: str) -> str:
    return _latest_materialization(instance, AssetKey("uploads"), partition).asset_materialization.metadata["reason"].value


def _latest_materialization(instance, key: AssetKey, partition: str):
    [record] = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, asset_partitions=[partition]),
                                               limit=1).records
    return record.event_log_entry


STYLE_KEYS = {"renders/pop-poster", "renders/halftone", "renders/warhol-grid", "renders/duotone"}


def test_render_asset_keys_and_checks_spell_the_style_ids() -> None:
    defs = build_definitions(load_settings({}))
    graph = defs.resolve_asset_graph()
    renders = AssetSelection.groups("renders").resolve(graph)
    assert {key.to_user_string() for key in renders} == STYLE_KEYS == {f"renders/{s}" for s in imaging.STYLES}
    assert {render_asset_key(s) for s in imaging.STYLES} == renders
    assert {AssetCheckKey(key, PRESETS_CHECK) for key in renders} <= set(graph.asset_check_keys)


def test_graph_names_stay_identifiers_that_run_config_addresses() -> None:
    """The requeue sensor's run config addresses each style's graph by
    ``render_asset_key(style).to_python_identifier()``; the UI's Launchpad shows the same name."""
    job = build_definitions(load_settings({})).resolve_job_def("render_uploads")
    nodes = {node.name for node in job.graph.nodes}
    graphs = {render_asset_key(s).to_python_identifier() for s in imaging.STYLES}
    assert graphs == {"renders__pop_poster", "renders__halftone", "renders__warhol_grid", "renders__duotone"}
    assert graphs <= nodes and all(name.isidentifier() for name in nodes)
