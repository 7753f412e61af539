"""The `uploads` asset validates each upload without rendering it: a bad upload is recorded
invalid with its reason while the others render, and the runbook's `SELECT error_message,
COUNT(*) FROM assets GROUP BY error_message` gives one row per cause: the refusals carry nothing
particular to the file or the process (sizes, offsets, paths, memory addresses)."""

from __future__ import annotations

from dagster import RunRequest

from render_pipeline import imaging
from render_pipeline.render.events import UPLOADS_KEY, render_asset_key
from render_pipeline.render.job import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, RENDER_RUN_TAGS
from render_pipeline.render.partitions import uploads_partitions
from render_pipeline_tests.imaging.refusals import assert_one_group_per_cause, causes
from render_pipeline_tests.orchestration_helpers import (
    definitions_for,
    execute,
    jpeg_bytes,
    renders_of_upload,
    run_all,
    tick,
)


PER_CAUSE = 3  # the engine-level test runs every file of the corpus; here a few per cause suffice


def _count(cause) -> int:
    return min(len(cause.files), PER_CAUSE) + len(cause.bytes_over_limit)


def _env(database_url: str, root) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "LOCAL_STORE_ROOT": str(root), "RENDER_DEFAULT_STYLES": "duotone"}


def _validate_in_one_run(defs, instance) -> None:
    """Register the uploads as the sensor does, then validate all of them in one ranged run."""
    assert tick(defs, instance, "uploads_sensor").run_requests
    keys = instance.get_dynamic_partitions(uploads_partitions.name)
    request = RunRequest(
        asset_selection=[UPLOADS_KEY],
        tags={**RENDER_RUN_TAGS, PARTITION_RANGE_START_TAG: keys[0], PARTITION_RANGE_END_TAG: keys[-1]},
    )
    assert execute(defs, instance, request).success


def test_recorded_refusals_group_into_one_row_per_cause(
    database, database_url, tmp_path, instance, monkeypatch
):
    root = tmp_path / "objects"
    monkeypatch.setenv("DATABASE_URL", database_url)
    defs = definitions_for(_env(database_url, root), presets=("play-feature",))
    corpus = causes()
    max_bytes = imaging.DecodeLimits().max_bytes
    cause_of_key: dict[str, str] = {}
    for name, cause in corpus.items():
        (root / "uploads" / name).mkdir(parents=True)
        for index, data in enumerate(cause.files[:PER_CAUSE]):
            (root / "uploads" / name / f"{index}.jpg").write_bytes(data)  # the name never decides
            cause_of_key[f"uploads/{name}/{index}.jpg"] = name
        for index, extra in enumerate(cause.bytes_over_limit):  # sparse: the store reports the size
            with open(root / "uploads" / name / f"big-{index}.png", "wb") as handle:
                handle.truncate(max_bytes + extra)
            cause_of_key[f"uploads/{name}/big-{index}.png"] = name

    _validate_in_one_run(defs, instance)

    with database.connection() as conn:
        rows = conn.execute("SELECT object_key, status, error_code, error_message FROM assets").fetchall()
        groups = conn.execute(
            "SELECT error_message, COUNT(*) AS n FROM assets GROUP BY error_message"
        ).fetchall()
    assert {row["object_key"] for row in rows} == set(cause_of_key)
    assert all(row["status"] == "invalid" for row in rows)
    assert_one_group_per_cause(
        [(cause_of_key[r["object_key"]], r["error_code"], r["error_message"]) for r in rows], corpus
    )
    assert len(groups) == len(corpus)
    assert sorted(g["n"] for g in groups) == sorted(_count(cause) for cause in corpus.values())


def test_corrupt_upload_is_invalid_while_the_next_one_renders(s3_env, boto, s3_bucket, database, instance):
    defs = definitions_for(s3_env, presets=("play-feature",))
    boto.put_object(Bucket=s3_bucket, Key="uploads/x1/broken.jpg", Body=jpeg_bytes()[:600])
    boto.put_object(Bucket=s3_bucket, Key="uploads/x2/fine.jpg", Body=jpeg_bytes(seed=9))
    boto.put_object(Bucket=s3_bucket, Key="uploads/no-folder.jpg", Body=b"whatever")
    boto.put_object(Bucket=s3_bucket, Key="uploads/x3/../escape.jpg", Body=b"whatever")

    result = tick(defs, instance, "uploads_sensor")
    assert len(result.run_requests) == 2  # the two partition keys, one run per run slot
    run_all(defs, instance, result)

    with database.connection() as conn:
        assets = {r["object_key"]: r for r in conn.execute("SELECT * FROM assets").fetchall()}
    assert assets["uploads/x1/broken.jpg"]["status"] == "invalid"
    assert assets["uploads/x1/broken.jpg"]["error_code"] in ("truncated", "corrupt")
    assert assets["uploads/no-folder.jpg"]["error_message"].startswith("key has no {asset_id}/ folder")
    assert "'..'" in assets["uploads/x3/../escape.jpg"]["error_message"]
    assert assets["uploads/x2/fine.jpg"]["status"] == "valid"
    # Only the valid upload's partition is materialized; the broken one is not (its check says why).
    assert instance.get_materialized_partitions(render_asset_key("duotone")) == {"x2/fine.jpg"}
    assert renders_of_upload(database, "uploads/x1/broken.jpg") == []
    assert {r["status"] for r in renders_of_upload(database, "uploads/x2/fine.jpg")} == {"completed"}
