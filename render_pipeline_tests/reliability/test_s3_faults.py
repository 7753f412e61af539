"""Scenarios 1 and 2: transient and permanent S3 failures, injected on the wire by the fault
proxy between the project and the S3 server."""

from __future__ import annotations

import pytest
from dagster import DagsterEventType

from render_pipeline.cli import main as cli_main
from render_pipeline.keys import asset_id_for, render_id_for, render_object_keys
from render_pipeline_tests.orchestration_helpers import definitions_for, jpeg_bytes, png_bytes
from render_pipeline_tests.reliability.harness import Pipeline, audit, list_keys, requeue

pytestmark = pytest.mark.reliability

STYLES = ("duotone",)
PRESETS = ("play-feature",)


def _retried_steps(outcome) -> list[str]:
    return [e.step_key for e in outcome.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]


def _audit(database, boto, bucket):
    return audit(database, list_keys(boto, bucket, ""), styles=STYLES, presets=PRESETS)


def test_transient_s3_errors_are_retried_and_converge_to_one_row(s3_env, proxy, boto, s3_bucket, database, instance):
    defs = definitions_for(s3_env, presets=PRESETS)
    boto.put_object(Bucket=s3_bucket, Key="uploads/a/one.jpg", Body=jpeg_bytes(64, 48, seed=1))
    boto.put_object(Bucket=s3_bucket, Key="uploads/b/two.png", Body=png_bytes(64, 48, seed=2))
    pipeline = Pipeline(defs, instance)
    first_output_key, _ = render_object_keys(render_id_for(asset_id_for("uploads/a/one.jpg"), STYLES[0], PRESETS[0]))

    # The listing fails through all of botocore's attempts: the tick fails loudly, keeps its
    # cursor, and the next tick (fault gone) finds both uploads.
    listing = proxy.add(ops=("list",), status=500, code="InternalError", times=3)
    with pytest.raises(Exception, match="S3 list"):
        pipeline.tick()
    assert pipeline.cursor is None and listing.fired == 3

    rules = [
        # 3 × SlowDown on the first HEAD: botocore gives up, the `uploads` step retries.
        proxy.add(ops=("head",), key_prefix="uploads/", status=503, code="SlowDown", times=3),
        # connection resets on a source GET: absorbed by botocore's own retries.
        proxy.add(action="reset", ops=("get",), key_prefix="uploads/b/", times=2),
        # the first render PUT reaches the server but the answer never comes (read timeout).
        proxy.add(action="stall", ops=("put",), key_prefix="renders/", nth=1, stall_seconds=4, forward_first=True),
        # then 4 × 500 on one render's PUT (renders are written concurrently, so the faults
        # are aimed at one key): that call exhausts botocore, the upload step retries.
        proxy.add(ops=("put",), key_prefix=first_output_key, status=500, code="InternalError", times=4),
    ]
    requests = pipeline.tick()
    assert len(requests) == 1
    [outcome] = pipeline.launch(requests)

    assert outcome.success
    assert all(rule.fired == (rule.times or 1) for rule in rules), [(r.action, r.code, r.fired) for r in rules]
    retried = _retried_steps(outcome)
    assert "uploads" in retried and "renders__duotone.duotone_upload" in retried, retried

    result = _audit(database, boto, s3_bucket)
    assert not result.problems, result.problems
    assert result.uploads == 2 and result.renders == {"completed": 2} and result.render_objects == 4
    with database.connection() as conn:
        rows = conn.execute("SELECT attempt, dagster_run_id FROM renders").fetchall()
    assert {(r["attempt"], r["dagster_run_id"]) for r in rows} == {(1, outcome.run_id)}

    # Nothing left to do: the next full cycle requests no run.
    assert pipeline.drain() == []


def test_permanent_s3_failure_is_explained_and_requeue_completes_it(
    s3_env, proxy, boto, s3_bucket, database, instance
):
    defs = definitions_for(s3_env, presets=PRESETS)
    boto.put_object(Bucket=s3_bucket, Key="uploads/p/photo.jpg", Body=jpeg_bytes(64, 48, seed=3))
    pipeline = Pipeline(defs, instance)

    outage = proxy.add(ops=("put",), key_prefix="renders/", status=503, code="ServiceUnavailable")
    [outcome] = pipeline.launch(pipeline.tick())
    assert not outcome.success
    assert _retried_steps(outcome).count("renders__duotone.duotone_upload") == 4  # STORAGE_RETRY
    assert outage.fired == 5 * 2 * 3  # 5 step attempts × 2 objects written concurrently × botocore's 3 attempts

    with database.connection() as conn:
        [row] = conn.execute("SELECT * FROM renders").fetchall()
    assert row["status"] == "failed"
    # Readable: which step, what S3 said, which run — not just "an error occurred".
    assert "duotone_upload" in row["error_message"] and outcome.run_id in row["error_message"]
    assert "ServiceUnavailable" in row["error_message"], row["error_message"]
    result = _audit(database, boto, s3_bucket)
    assert result.render_objects == 0 and not result.orphans and not result.unexplained

    # The fault clears; the operator requeues by the error pattern (the reason is searchable);
    # the requeue sensor's run completes it.
    proxy.remove(outage)
    assert cli_main(["requeue", "--error-like", "%ServiceUnavailable%", "--reason", "S3 outage over"]) == 0
    [requeued] = pipeline.launch(pipeline.requeue_tick())
    assert requeued.success
    result = _audit(database, boto, s3_bucket)
    assert not result.problems, result.problems
    assert result.renders == {"completed": 1} and result.render_objects == 2
    with database.connection() as conn:
        row = conn.execute("SELECT * FROM renders").fetchone()
    assert row["attempt"] == 2 and row["dagster_run_id"] == requeued.run_id
    assert not pipeline.requeue_tick()


def test_an_upload_whose_validation_run_failed_says_why_until_it_is_requested_again(
    s3_env, proxy, boto, s3_bucket, database, instance
):
    defs = definitions_for(s3_env, presets=PRESETS)
    boto.put_object(Bucket=s3_bucket, Key="uploads/v/photo.jpg", Body=jpeg_bytes(64, 48, seed=9))
    boto.put_object(Bucket=s3_bucket, Key="uploads/w/photo.jpg", Body=jpeg_bytes(64, 48, seed=10))
    pipeline = Pipeline(defs, instance)

    outage = proxy.add(ops=("head", "get"), key_prefix="uploads/", status=503, code="ServiceUnavailable")
    [outcome] = pipeline.launch(pipeline.tick())  # both uploads in one ranged run
    assert not outcome.success
    with database.connection() as conn:
        rows = conn.execute("SELECT status, error_code, error_message FROM assets ORDER BY object_key").fetchall()
    assert [(r["status"], r["error_code"]) for r in rows] == [("registered", "run_failed")] * 2
    assert all("step uploads" in r["error_message"] and "503" in r["error_message"] for r in rows), rows
    assert all(outcome.run_id in r["error_message"] for r in rows)
    assert "requested again within 10 minutes" in rows[0]["error_message"]

    # The outage ends; once the claim expires the sensor requests them again and the note goes.
    proxy.remove(outage)
    with database.connection() as conn:
        conn.execute("UPDATE assets SET requested_at = requested_at - interval '11 minutes'")
    pipeline.cursor = None
    retried = pipeline.launch(pipeline.tick())
    assert retried and all(outcome.success for outcome in retried)
    with database.connection() as conn:
        rows = conn.execute("SELECT status, error_code, error_message FROM assets").fetchall()
    assert [(r["status"], r["error_code"], r["error_message"]) for r in rows] == [("valid", None, None)] * 2


def test_permanent_failure_of_the_source_object_is_explained(s3_env, proxy, boto, s3_bucket, database, instance):
    """The decode step cannot read the upload (AccessDenied); the preview-only outage leaves
    an output.png behind that the requeued render overwrites under the same key."""
    defs = definitions_for(s3_env, presets=PRESETS)
    boto.put_object(Bucket=s3_bucket, Key="uploads/q/a.jpg", Body=jpeg_bytes(64, 48, seed=5))
    boto.put_object(Bucket=s3_bucket, Key="uploads/r/b.jpg", Body=jpeg_bytes(64, 48, seed=6))
    pipeline = Pipeline(defs, instance)
    # Validation reads each upload once (let through); every later read of q/a.jpg is refused.
    denied = proxy.add(ops=("get",), key_prefix="uploads/q/", status=403, code="AccessDenied", skip=1)
    [outcome] = pipeline.launch(pipeline.tick())
    assert denied.fired >= 3
    with database.connection() as conn:
        rows = {r["asset_id"]: r for r in conn.execute("SELECT * FROM renders").fetchall()}
    bad = rows[asset_id_for("uploads/q/a.jpg")]
    assert bad["status"] == "failed" and "AccessDenied" in bad["error_message"], bad["error_message"]
    good = rows[asset_id_for("uploads/r/b.jpg")]
    assert good["status"] in ("completed", "failed") and (good["status"] == "completed" or good["error_message"])
    result = _audit(database, boto, s3_bucket)
    assert not result.orphans and not result.unexplained and not result.unfinished, result.problems

    proxy.remove(denied)
    requeue(database, "status = 'failed'")
    for requeued in pipeline.launch(pipeline.requeue_tick()):
        assert requeued.success
    result = _audit(database, boto, s3_bucket)
    assert not result.problems, result.problems
    assert result.renders == {"completed": 2}
