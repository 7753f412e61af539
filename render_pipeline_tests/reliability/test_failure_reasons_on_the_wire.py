"""Each failed render's own reason, from real S3 failures, and the requeue patterns the docs
give operators matching exactly those reasons.

Four uploads in two ranged runs: the first run's render writes are refused (503
ServiceUnavailable); in the second, the HEAD of its second upload is refused (a HEAD has no
body: botocore sees only "503"), so the `uploads` step fails after its first upload was
queued — that upload's renders never start.  A fifth upload's writes time out; a sixth
completes and then loses its objects (orphan reconciliation).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from render_pipeline.keys import asset_id_for, render_id_for, render_object_keys
from render_pipeline.maintenance.orphans import OrphanConfig, reconcile_orphans
from render_pipeline.store import maintenance as maintenance_store
from render_pipeline_tests.conftest import make_s3_store
from render_pipeline_tests.orchestration_helpers import definitions_for, jpeg_bytes
from render_pipeline_tests.reliability.harness import Pipeline

pytestmark = pytest.mark.reliability

STYLE, PRESET = "duotone", "play-feature"
ROOT = Path(__file__).resolve().parents[2]
# One botocore attempt and a 1 s read timeout: the in-op and step retries still run their
# full production schedule, in seconds.
FAST_CLIENT = {"MINIO_MAX_ATTEMPTS": "1", "MINIO_READ_TIMEOUT": "1"}


def _render_id(name: str):
    return render_id_for(asset_id_for(f"uploads/{name}/photo.jpg"), STYLE, PRESET)


def _documented_patterns() -> set[str]:
    """Every `--error-like '…'` pattern README.md and docs/ show operators."""
    texts = [(ROOT / "README.md").read_text(), *(path.read_text() for path in (ROOT / "docs").glob("*.md"))]
    return {match for text in texts for match in re.findall(r"--error-like '([^']+)'", text)}


def test_every_render_says_why_it_failed_and_the_documented_patterns_find_it(
    s3_env, proxy, boto, s3_bucket, database, instance
):
    defs = definitions_for({**s3_env, **FAST_CLIENT}, presets=(PRESET,))
    for index, name in enumerate("abcd"):
        boto.put_object(Bucket=s3_bucket, Key=f"uploads/{name}/photo.jpg", Body=jpeg_bytes(64, 48, seed=index))
    pipeline = Pipeline(defs, instance)
    refused = proxy.add(ops=("put",), key_prefix=f"renders/{_render_id('a')}/", status=503, code="ServiceUnavailable")
    head_refused = proxy.add(ops=("head",), key_prefix="uploads/d/", status=503, code="ServiceUnavailable")
    requests = pipeline.tick()
    assert [r.tags["render_pipeline/uploads"] for r in requests] == ["2", "2"]
    first, second = pipeline.launch(requests)
    assert first.success and not second.success
    assert refused.fired and head_refused.fired

    proxy.remove(refused)
    boto.put_object(Bucket=s3_bucket, Key="uploads/e/photo.jpg", Body=jpeg_bytes(64, 48, seed=7))
    boto.put_object(Bucket=s3_bucket, Key="uploads/f/photo.jpg", Body=jpeg_bytes(64, 48, seed=8))
    stalled = proxy.add(action="stall", ops=("put",), key_prefix=f"renders/{_render_id('e')}/", stall_seconds=3)
    assert all(outcome.success for outcome in pipeline.launch(pipeline.tick()))
    assert stalled.fired
    for key in render_object_keys(_render_id("f")):  # a completed render loses its objects
        boto.delete_object(Bucket=s3_bucket, Key=key)
    reconcile_orphans(database, make_s3_store(s3_env["MINIO_ENDPOINT"], s3_bucket), instance, OrphanConfig(),
                      logging.getLogger("test"), now=datetime.now(UTC) + timedelta(hours=25))

    with database.connection() as conn:
        reasons = {r["id"]: r["error_message"] for r in conn.execute("SELECT id, error_message FROM renders")}
    a, b, c, e, f = (_render_id(name) for name in "abcef")
    assert reasons[a] == reasons[b] == "upload: ObjectStoreError: S3 put failed: ServiceUnavailable", reasons
    # c was queued by the run whose `uploads` step then failed on d: it never started, and
    # says so and where the run failed, with S3's reason named as a GET or PUT would name it.
    assert reasons[c] == (f"not started: run failed in step uploads: Exceeded max_retries of 4: ObjectStoreError: "
                          f"S3 head failed: ServiceUnavailable (HTTP 503) (run {second.run_id})"), reasons[c]
    assert reasons[e] == "upload: ObjectStoreError: S3 put failed: timed out (ReadTimeoutError)", reasons[e]
    assert reasons[f].startswith("output missing:"), reasons[f]
    for reason in filter(None, reasons.values()):  # groupable: nothing that differs per object
        assert not re.search(r"uploads/|renders/|https?://|127\.0\.0\.1|0x[0-9a-f]{6}", reason), reason

    # Every pattern the docs give selects exactly the renders of its cause.
    expected = {"%ServiceUnavailable%": {a, b, c}, "%timed out%": {e}, "output missing%": {f}}
    patterns = _documented_patterns()
    assert patterns and patterns <= expected.keys(), patterns - expected.keys()
    with database.connection() as conn:
        for pattern in patterns:
            rows = maintenance_store.select_failed(conn, error_ilike=pattern, limit=100)
            assert {r["id"] for r in rows} == expected[pattern], pattern
