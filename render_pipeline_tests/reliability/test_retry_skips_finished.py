"""A retried or re-executed render run never redoes finished work: renders completed for the
same upload and style versions keep their rows and objects; only what was left unfinished
is rendered again.  The store enforces it: a completed row is never started or queued again
for the versions it was rendered from."""

from __future__ import annotations

import time

import pytest

from render_pipeline.keys import asset_id_for, render_id_for
from render_pipeline.store import renders as renders_store
from render_pipeline.store.renders import RenderTarget
from render_pipeline_tests.orchestration_helpers import definitions_for, execute, jpeg_bytes
from render_pipeline_tests.reliability.harness import Pipeline, list_keys

pytestmark = pytest.mark.reliability

STYLES, PRESETS = ("duotone", "halftone"), ("play-feature",)
COMPLETED_FACTS = ("status", "completed_at", "output_bytes", "output_sha256", "attempt", "dagster_run_id")


def _render_id(name: str, style: str):
    return render_id_for(asset_id_for(f"uploads/{name}/photo.jpg"), style, PRESETS[0])


def _objects(boto, bucket) -> dict[str, tuple]:
    return {key: (etag, boto.head_object(Bucket=bucket, Key=key)["LastModified"])
            for key, etag in list_keys(boto, bucket, "renders/").items()}


def test_a_retried_ranged_run_renders_only_what_it_left_unfinished(s3_env, proxy, boto, s3_bucket, database, instance):
    defs = definitions_for({**s3_env, "RENDER_DEFAULT_STYLES": ",".join(STYLES)}, presets=PRESETS)
    for index, name in enumerate("abc"):
        boto.put_object(Bucket=s3_bucket, Key=f"uploads/{name}/photo.jpg", Body=jpeg_bytes(64, 48, seed=index))
    pipeline = Pipeline(defs, instance)
    [request, _] = pipeline.tick()  # a ranged run of a and b (c has its own)
    assert request.tags["render_pipeline/uploads"] == "2"
    # b's halftone render cannot be written (nor a's, written in the same request batch): the
    # run finishes with them failed and duotone completed.
    refused = proxy.add(ops=("put",), key_prefix=f"renders/{_render_id('b', 'halftone')}/", status=503,
                        code="ServiceUnavailable")
    assert execute(defs, instance, request).success and refused.fired
    proxy.remove(refused)
    with database.connection() as conn:
        before = {r["id"]: r for r in conn.execute("SELECT * FROM renders").fetchall()}
    completed = {rid for rid, row in before.items() if row["status"] == "completed"}
    unfinished = {_render_id(name, "halftone") for name in "ab"}
    assert completed == {_render_id(name, "duotone") for name in "ab"}
    assert {before[rid]["status"] for rid in unfinished} == {"failed"}
    objects = {key: facts for key, facts in _objects(boto, s3_bucket).items()
               if any(str(rid) in key for rid in completed)}
    assert len(objects) == 4
    time.sleep(1.1)  # S3 times are in seconds: a rewrite would show

    # The daemon's retry runs the same partitions and steps again (ALL_STEPS, a new run).
    puts_before = len(proxy.requests(op="put", key_prefix="renders/"))
    retry = execute(defs, instance, request.with_replaced_attrs(run_key=None))
    assert retry.success
    puts = proxy.requests(op="put", key_prefix="renders/")[puts_before:]
    assert {p.request.key.split("/")[1] for p in puts} == {str(rid) for rid in unfinished}, puts
    with database.connection() as conn:
        after = {r["id"]: r for r in conn.execute("SELECT * FROM renders").fetchall()}
    for render_id in completed:
        assert [after[render_id][f] for f in COMPLETED_FACTS] == [before[render_id][f] for f in COMPLETED_FACTS]
    for render_id in unfinished:
        redone = after[render_id]
        assert (redone["status"], redone["attempt"], redone["dagster_run_id"]) == ("completed", 2, retry.run_id)
    current = _objects(boto, s3_bucket)
    assert {k: v for k, v in current.items() if k in objects} == objects  # no finished object rewritten
    assert len(current) == 8
    # Each partition's check passes: finished renders of these versions count as complete.
    checks = [e for e in retry.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    renders_checks = [e.event_specific_data for e in checks if e.event_specific_data.check_name == "presets_complete"]
    assert len(renders_checks) == 4 and all(c.passed for c in renders_checks)


def test_the_store_never_takes_a_completed_render_back_for_the_same_versions(
    s3_env, proxy, boto, s3_bucket, database, instance
):
    defs = definitions_for({**s3_env, "RENDER_DEFAULT_STYLES": "duotone"}, presets=PRESETS)
    boto.put_object(Bucket=s3_bucket, Key="uploads/s/photo.jpg", Body=jpeg_bytes(64, 48, seed=4))
    Pipeline(defs, instance).launch(Pipeline(defs, instance).tick())
    render_id, asset_id = _render_id("s", "duotone"), asset_id_for("uploads/s/photo.jpg")
    with database.connection() as conn:
        row = conn.execute("SELECT * FROM renders WHERE id = %s", (render_id,)).fetchone()
        sha = conn.execute("SELECT sha256 FROM assets WHERE id = %s", (asset_id,)).fetchone()["sha256"]
        same = RenderTarget(render_id, asset_id, "duotone", PRESETS[0], sha, row["style_version"])
        renders_store.queue(conn, [same], run_id="another-run")
        assert renders_store.start(conn, [same], run_id="another-run") == set()
        assert conn.execute("SELECT * FROM renders WHERE id = %s", (render_id,)).fetchone() == row
        # A new upload version (or style version) is new work: the row is taken over.
        new_version = RenderTarget(render_id, asset_id, "duotone", PRESETS[0], "0" * 64, row["style_version"])
        assert renders_store.start(conn, [new_version], run_id="another-run") == {render_id}
        assert conn.execute("SELECT status FROM renders WHERE id = %s", (render_id,)).fetchone()["status"] == "started"
