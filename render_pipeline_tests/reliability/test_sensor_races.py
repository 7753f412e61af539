"""Scenario 5: upload-sensor evaluations that race on the same listing, or repeat after a lost
tick, never request the same upload version twice (no duplicate runs, no duplicate rows)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from render_pipeline.render import sensors
from render_pipeline_tests.orchestration_helpers import definitions_for, jpeg_bytes, tick
from render_pipeline_tests.reliability.fault_proxy import wait_until
from render_pipeline_tests.reliability.harness import Pipeline, audit, list_keys

pytestmark = pytest.mark.reliability

PRESETS = ("play-feature",)


def _coverage(instance, requests) -> Counter:
    """How many distinct run keys cover each upload partition (ranges resolved in order)."""
    order = instance.get_dynamic_partitions("uploads")
    covered: Counter = Counter()
    for run_key in {r.run_key for r in requests}:
        request = next(r for r in requests if r.run_key == run_key)
        start = order.index(request.tags["dagster/asset_partition_range_start"])
        end = order.index(request.tags["dagster/asset_partition_range_end"])
        covered.update(order[start : end + 1])
    return covered


def test_interleaved_evaluations_of_one_listing_request_each_upload_once(
    s3_env, proxy, boto, s3_bucket, database, instance, monkeypatch
):
    """A reads page 1 and is held on page 2 while B reads and requests everything; then A
    finishes.  Both started from the same cursor, as a re-evaluated or duplicated tick does."""
    monkeypatch.setattr(sensors, "LIST_PAGE_SIZE", 2)
    defs = definitions_for(s3_env, presets=PRESETS)
    for name in ("u1", "u2", "u3"):
        boto.put_object(Bucket=s3_bucket, Key=f"uploads/{name}/p.jpg", Body=jpeg_bytes(64, 48, seed=len(name)))

    release_a = threading.Event()

    def hold_a(_request) -> None:
        assert release_a.wait(30), "evaluation A was never released"

    lists = proxy.add(action="pass", ops=("list",), nth=2, after=hold_a)  # A's second page
    results: dict[str, object] = {}
    a = threading.Thread(target=lambda: results.update(a=tick(defs, instance, "uploads_sensor", None)))
    a.start()
    wait_until(lambda: lists.matched >= 2, timeout=30, what="evaluation A to reach page 2")
    results["b"] = tick(defs, instance, "uploads_sensor", None)
    release_a.set()
    a.join(30)
    assert not a.is_alive()

    requests = list(results["a"].run_requests or []) + list(results["b"].run_requests or [])
    coverage = _coverage(instance, requests)
    assert set(coverage) == {"u1/p.jpg", "u2/p.jpg", "u3/p.jpg"}
    assert max(coverage.values()) == 1, f"uploads requested by two different runs: {coverage}"

    pipeline = Pipeline(defs, instance)
    for request in requests:
        assert pipeline.launch([request])[0].success
    result = audit(database, list_keys(boto, s3_bucket, ""), styles=("duotone",), presets=PRESETS)
    assert not result.problems and result.renders == {"completed": 3}, result.summary()
    assert len(pipeline.run_ids) == len({r.run_key for r in requests})


def test_concurrent_ticks_never_overlap(s3_env, boto, s3_bucket, database, instance, soak):
    """Two evaluations released together, over several rounds of new uploads."""
    defs = definitions_for(s3_env, presets=PRESETS)
    rounds = 20 if soak else 6
    all_requests = []
    for round_no in range(rounds):
        for i in range(5):
            boto.put_object(Bucket=s3_bucket, Key=f"uploads/r{round_no}-{i}/p.jpg", Body=b"not rendered here")
        barrier = threading.Barrier(2, timeout=30)
        results: list = []

        def evaluate() -> None:
            barrier.wait()
            results.append(tick(defs, instance, "uploads_sensor", None))

        threads = [threading.Thread(target=evaluate) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(results) == 2
        all_requests += [r for result in results for r in result.run_requests or []]
    coverage = _coverage(instance, all_requests)
    assert len(coverage) == rounds * 5
    assert max(coverage.values()) == 1, {k: v for k, v in coverage.items() if v > 1}


def test_a_lost_tick_result_is_requested_again_later(s3_env, boto, s3_bucket, database, instance):
    """The daemon evaluated a tick but lost its result (crash before launching): the next
    evaluation from the same cursor requests nothing — the versions are marked requested —
    and once the re-request window has passed the upload is requested again, not forgotten."""
    defs = definitions_for(s3_env, presets=PRESETS)
    boto.put_object(Bucket=s3_bucket, Key="uploads/lost/p.jpg", Body=jpeg_bytes(64, 48, seed=7))
    lost = tick(defs, instance, "uploads_sensor", None)
    assert len(lost.run_requests) == 1
    assert not tick(defs, instance, "uploads_sensor", None).run_requests  # same cursor again

    with database.connection() as conn:  # the re-request window passes
        conn.execute("UPDATE assets SET requested_at = requested_at - interval '1 hour'")
    pipeline = Pipeline(defs, instance)
    outcomes = pipeline.drain()
    assert len(outcomes) == 1 and outcomes[0].success
    result = audit(database, list_keys(boto, s3_bucket, ""), styles=("duotone",), presets=PRESETS)
    assert not result.problems and result.renders == {"completed": 1}, result.summary()


def test_an_upload_registered_by_reconciliation_is_still_requested(s3_env, boto, s3_bucket, database, instance):
    """Orphan reconciliation registers stray uploads without a request time: the sensor must
    still claim and request them (a NULL `requested_at` is 'never requested')."""
    from render_pipeline.keys import asset_id_for
    from render_pipeline.store import maintenance

    defs = definitions_for(s3_env, presets=PRESETS)
    boto.put_object(Bucket=s3_bucket, Key="uploads/stray/p.jpg", Body=jpeg_bytes(64, 48, seed=8))
    with database.connection() as conn:
        maintenance.register_uploads(conn, [(asset_id_for("uploads/stray/p.jpg"), "uploads/stray/p.jpg", "stray/p.jpg")])
    requests = tick(defs, instance, "uploads_sensor", None).run_requests
    assert len(requests) == 1
