"""Scenarios 1 and 2: transient and permanent S3 failures, injected on the wire by the fault
proxy between the project and the S3 server."""

from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg import sql
from dagster import AssetCheckKey, DagsterEventType

from render_pipeline.cli import main as cli_main
from render_pipeline.keys import asset_id_for, render_id_for, render_object_keys
from render_pipeline.render.events import PRESETS_CHECK, render_asset_key
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
        # are aimed at one key): that call exhausts botocore, the upload op writes it again.
        proxy.add(ops=("put",), key_prefix=first_output_key, status=500, code="InternalError", times=4),
    ]
    requests = pipeline.tick()
    assert len(requests) == 2  # one run per run slot
    outcomes = pipeline.launch(requests)

    assert all(outcome.success for outcome in outcomes)
    assert all(rule.fired == (rule.times or 1) for rule in rules), [(r.action, r.code, r.fired) for r in rules]
    assert "uploads" in [step for outcome in outcomes for step in _retried_steps(outcome)]

    result = _audit(database, boto, s3_bucket)
    assert not result.problems, result.problems
    assert result.uploads == 2 and result.renders == {"completed": 2} and result.render_objects == 4
    with database.connection() as conn:
        rows = conn.execute("SELECT attempt, dagster_run_id FROM renders").fetchall()
    assert {r["attempt"] for r in rows} == {1}
    assert {r["dagster_run_id"] for r in rows} == {outcome.run_id for outcome in outcomes}

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
    # Only the render the outage touched fails; the run (the batch) carries on and succeeds.
    assert outcome.success and not _retried_steps(outcome)
    assert outage.fired == 5 * 2 * 3  # 5 writes (STORAGE_RETRY's schedule) × 2 objects × botocore's 3 attempts

    with database.connection() as conn:
        [row] = conn.execute("SELECT * FROM renders").fetchall()
    assert row["status"] == "failed" and row["dagster_run_id"] == outcome.run_id
    # Readable: which stage, what S3 said — not just "an error occurred".
    assert row["error_message"].startswith("upload: ObjectStoreError: S3 put"), row["error_message"]
    assert "ServiceUnavailable" in row["error_message"], row["error_message"]
    check = _latest_check(instance, "photo.jpg")
    assert not check.passed and "ServiceUnavailable" in check.description
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
    outcomes = pipeline.launch(pipeline.tick())
    assert outcomes and not any(outcome.success for outcome in outcomes)
    with database.connection() as conn:
        rows = conn.execute("SELECT status, error_code, error_message FROM assets ORDER BY object_key").fetchall()
    assert [(r["status"], r["error_code"]) for r in rows] == [("registered", "run_failed")] * 2
    assert all("step uploads" in r["error_message"] and "503" in r["error_message"] for r in rows), rows
    assert all(any(o.run_id in r["error_message"] for o in outcomes) for r in rows)
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
    """A run reads each upload once, so a source that turns unreadable after validation does
    not stop it; a requeue, which must read it again, fails with S3's reason and completes
    once the object is readable."""
    defs = definitions_for(s3_env, presets=PRESETS)
    boto.put_object(Bucket=s3_bucket, Key="uploads/q/a.jpg", Body=jpeg_bytes(64, 48, seed=5))
    boto.put_object(Bucket=s3_bucket, Key="uploads/r/b.jpg", Body=jpeg_bytes(64, 48, seed=6))
    pipeline = Pipeline(defs, instance)
    # Validation reads each upload once (let through); every later read of q/a.jpg is refused.
    denied = proxy.add(ops=("get",), key_prefix="uploads/q/", status=403, code="AccessDenied", skip=1)
    assert all(outcome.success for outcome in pipeline.launch(pipeline.tick()))
    assert denied.fired == 0
    assert _audit(database, boto, s3_bucket).renders == {"completed": 2}

    requeue(database, "asset_id = %s", (asset_id_for("uploads/q/a.jpg"),))
    [outcome] = pipeline.launch(pipeline.requeue_tick())
    assert outcome.success and denied.fired >= 3
    with database.connection() as conn:
        rows = {r["asset_id"]: r for r in conn.execute("SELECT * FROM renders").fetchall()}
    bad = rows[asset_id_for("uploads/q/a.jpg")]
    assert bad["status"] == "failed" and "AccessDenied" in bad["error_message"], bad["error_message"]
    assert bad["error_message"].startswith("decode: ObjectStoreError: S3 get")
    assert rows[asset_id_for("uploads/r/b.jpg")]["status"] == "completed"
    result = _audit(database, boto, s3_bucket)
    assert not result.unexplained and not result.unfinished, result.problems

    proxy.remove(denied)
    requeue(database, "status = 'failed'")
    for requeued in pipeline.launch(pipeline.requeue_tick()):
        assert requeued.success
    result = _audit(database, boto, s3_bucket)
    assert not result.problems, result.problems
    assert result.renders == {"completed": 2}


def _latest_check(instance, partition_key: str):
    """The latest `presets_complete` evaluation of one upload partition, as the UI reads it."""
    records = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(render_asset_key("duotone"), PRESETS_CHECK), limit=20
    )
    return next(r.evaluation for r in records if r.evaluation and r.evaluation.partition.endswith(partition_key))


def test_an_s3_outage_while_the_renders_are_written_and_checked_is_ridden_out(
    s3_env, proxy, boto, s3_bucket, database, instance, soak
):
    """Every S3 request refused (503) for 4 s (30 s in the soak) from the first render write
    on — through the writes and the `presets_complete` evaluations — with the production
    retry budget: the run succeeds, every render completes, every check passes."""
    seconds = 30.0 if soak else 4.0
    defs = definitions_for({**s3_env, "MINIO_RETRY_SECONDS": "45", "RENDER_DEFAULT_STYLES": "duotone,halftone"},
                           presets=PRESETS)
    for name in ("s", "t", "u"):
        boto.put_object(Bucket=s3_bucket, Key=f"uploads/{name}/photo.jpg", Body=jpeg_bytes(64, 48, seed=ord(name)))
    pipeline = Pipeline(defs, instance)
    requests = pipeline.tick()
    outages: list = []

    def outage_begins(_request) -> None:
        outages.append(proxy.outage(seconds, status=503, code="ServiceUnavailable"))

    proxy.add(action="pass", ops=("put",), key_prefix="renders/", nth=1, before=outage_begins)
    outcomes = pipeline.launch(requests)

    assert outages and outages[0].fired > 0
    assert outcomes and all(outcome.success for outcome in outcomes)
    checks = [e.event_specific_data for outcome in outcomes for e in outcome.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert len([c for c in checks if c.check_name == PRESETS_CHECK]) == 6 and all(c.passed for c in checks)
    result = audit(database, list_keys(boto, s3_bucket, ""), styles=("duotone", "halftone"), presets=PRESETS)
    assert not result.problems and result.renders == {"completed": 6}, result.summary()
    print(f"{outages[0].fired} S3 request(s) refused over {seconds:g} s; run(s) succeeded")


def test_a_check_that_cannot_read_the_rows_fails_as_not_evaluated_and_the_run_succeeds(
    s3_env, proxy, boto, s3_bucket, database, database_url, instance
):
    """Once the render's objects are written, the test locks `size_presets` (which the
    `presets_complete` query joins) with the database's lock_timeout at 200 ms: every read of
    the check fails.  The check retries, then fails as not evaluated; the render stays
    completed and the run succeeds."""
    defs = definitions_for(s3_env, presets=PRESETS)
    boto.put_object(Bucket=s3_bucket, Key="uploads/k/photo.jpg", Body=jpeg_bytes(64, 48, seed=12))
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} SET lock_timeout = '200ms'").format(sql.Identifier(admin.info.dbname)))
    holder = psycopg.connect(database_url)
    locked = threading.Event()

    def lock_the_presets(_request) -> None:
        holder.execute("LOCK TABLE size_presets IN ACCESS EXCLUSIVE MODE")
        locked.set()

    proxy.add(action="pass", ops=("put",), key_prefix="renders/", nth=2, after=lock_the_presets)
    pipeline = Pipeline(defs, instance)
    try:
        [outcome] = pipeline.launch(pipeline.tick())
    finally:
        holder.rollback()
        holder.close()
    assert locked.is_set() and outcome.success
    [check] = [e.event_specific_data for e in outcome.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
               and e.event_specific_data.check_name == PRESETS_CHECK]
    assert not check.passed and check.description.startswith("not evaluated: the render rows could not be read ("), (
        check.description)
    assert "lock timeout" in check.description and "this run wrote 1 of 1 preset(s)" in check.description
    # uploads + render, read back from the instance's event log (what the UI shows)
    assert len(instance.all_logs(outcome.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)) == 2
    result = _audit(database, boto, s3_bucket)
    assert not result.problems and result.renders == {"completed": 1}, result.summary()
