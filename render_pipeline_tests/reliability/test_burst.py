"""Scenario 6: a burst of small uploads with corrupt ones mixed in.  Every upload ends
`completed` or `invalid` with a reason, SQL counts equal object counts, and every sensor tick
stays bounded in work and time.

CI: 150 + 6 corrupt on the local store (the embedded default) at 64 uploads a tick (three
discovery ticks), runs executed by two worker processes on a PostgreSQL-backed instance.
Soak (RENDER_PIPELINE_SOAK=1): 5 000 + 100 on the local store, and 2 000 + 40 on S3 through
the fault proxy with 2 % transient faults.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import struct
import time
import zlib
from concurrent.futures import ProcessPoolExecutor

import pytest
from dagster_shared.serdes import serialize_value

from render_pipeline.render import sensors
from render_pipeline.resources.object_store import LocalObjectStore
from render_pipeline_tests.orchestration_helpers import definitions_for, jpeg_bytes, png_bytes
from render_pipeline_tests.reliability import worker
from render_pipeline_tests.reliability.harness import Pipeline, audit, list_keys

pytestmark = pytest.mark.reliability

PRESETS = ("play-feature",)
TICK_SECONDS_LIMIT = 30.0  # Dagster cancels a sensor tick at 60 s


def _png_bomb(width: int = 40_000, height: int = 40_000) -> bytes:
    """A valid PNG header announcing 1.6 gigapixels (a decompression bomb), no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def corrupt_objects(count: int) -> dict[str, bytes]:
    good = jpeg_bytes(64, 48, seed=40)
    makers = [
        lambda i: (f"trunc-{i}.jpg", good[: 200 + 37 * i]),
        lambda i: (f"random-{i}.jpg", bytes((i * 7919 + j * 104729) % 256 for j in range(900))),
        lambda i: (f"zero-{i}.jpg", b""),
        lambda i: (f"text-{i}.png", b"this is not an image\n" * 20),
        lambda i: (f"header-only-{i}.png", b"\x89PNG\r\n\x1a\n"),
        lambda i: (f"bomb-{i}.png", _png_bomb()),
        lambda i: (f"gif-garbage-{i}.gif", b"GIF89a" + b"\x00\xff" * 40),
        lambda i: (f"png-trunc-{i}.png", png_bytes(64, 48, seed=i)[:120]),
    ]
    objects = {}
    for i in range(count):
        name, data = makers[i % len(makers)](i)
        objects[f"uploads/bad-{i:04d}/{name}"] = data
    return objects


def good_objects(count: int) -> dict[str, bytes]:
    images = [jpeg_bytes(64, 48, seed=s) for s in range(8)] + [png_bytes(64, 48, seed=s) for s in range(4)]
    # Ids deliberately not in upload order (user-chosen ids are not monotonic).
    return {
        f"uploads/u{(i * 7561) % 100_000:05d}-{i}/img.{'jpg' if i % 12 < 8 else 'png'}": images[i % 12]
        for i in range(count)
    }


def _run_burst(defs, instance, expected_uploads: int, *, workers: int = 2, failing_ticks_ok: bool = False):
    """Tick like the daemon (every tick, while runs execute), run requests on `workers`
    processes, until a full cycle finds nothing new; returns (pipeline, outcomes, tick errors).
    With ``failing_ticks_ok`` a tick that raises is recorded and the next tick retries from
    the same cursor, as the daemon does."""
    pipeline = Pipeline(defs, instance)
    futures, tick_errors = [], []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        for _ in range(math.ceil(expected_uploads / sensors.MAX_UPLOADS_PER_TICK) + 3 + 10 * failing_ticks_ok):
            try:
                requests = pipeline.tick()
            except Exception as exc:  # noqa: BLE001 - only when failing_ticks_ok
                if not failing_ticks_ok:
                    raise
                tick_errors.append(str(exc).splitlines()[0])
                continue
            futures += [pool.submit(worker.execute_serialized, serialize_value(r)) for r in requests]
            if not requests and pipeline._cycle_wrapped():
                break
        outcomes = [f.result(timeout=900) for f in futures]
    for run_id, success in outcomes:
        if not success:
            pipeline.notify_failure(run_id)
    return pipeline, outcomes, tick_errors


def _check(pipeline, outcomes, result, *, good: int, bad: int, started: float, label: str) -> str:
    assert not result.problems, result.problems
    assert result.uploads == good + bad
    assert result.assets == {"valid": good, "invalid": bad}, result.assets
    assert result.renders == {"completed": good}, result.renders
    assert result.render_objects == 2 * good
    # Ticks stay bounded: at most MAX_UPLOADS_PER_TICK uploads each, well inside the timeout.
    assert max(t.uploads for t in pipeline.ticks) <= sensors.MAX_UPLOADS_PER_TICK
    assert max(t.seconds for t in pipeline.ticks) < TICK_SECONDS_LIMIT, [round(t.seconds, 2) for t in pipeline.ticks]
    discovery_ticks = sum(1 for t in pipeline.ticks if t.uploads)
    assert discovery_ticks <= math.ceil((good + bad) / sensors.MAX_UPLOADS_PER_TICK)
    summary = (
        f"{label}: {result.summary()} runs={len(outcomes)} failed_runs={sum(not s for _, s in outcomes)} "
        f"ticks={len(pipeline.ticks)} max_tick_s={max(t.seconds for t in pipeline.ticks):.2f} "
        f"wall_s={time.perf_counter() - started:.1f}"
    )
    print(summary)
    return summary


def test_burst_on_the_local_store(database, database_url, tmp_path, pg_instance, monkeypatch, soak):
    good, bad = (5000, 100) if soak else (150, 6)  # CI runs a small burst; the soak a large one
    if not soak:  # a small burst still takes several discovery ticks
        monkeypatch.setattr(sensors, "MAX_UPLOADS_PER_TICK", 64)
    root = tmp_path / "objects"
    env = {"DATABASE_URL": database_url, "LOCAL_STORE_ROOT": str(root), "RENDER_DEFAULT_STYLES": "duotone"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MINIO_ENDPOINT", raising=False)
    objects = {**good_objects(good), **corrupt_objects(bad)}
    for key, data in objects.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    started = time.perf_counter()

    defs = definitions_for(env, presets=PRESETS)
    pipeline, outcomes, _ = _run_burst(defs, pg_instance, good + bad)
    store = LocalObjectStore(root=str(root))
    listing = {o.key: o.etag for prefix in ("uploads/", "renders/") for o in store.iter_objects(prefix)}
    result = audit(database, listing, styles=("duotone",), presets=PRESETS)
    _check(pipeline, outcomes, result, good=good, bad=bad, started=started, label="local burst")
    with database.connection() as conn:
        reasons = conn.execute("SELECT error_code, count(*) AS n FROM assets WHERE status = 'invalid' GROUP BY 1").fetchall()
    assert sum(r["n"] for r in reasons) == bad and all(r["error_code"] for r in reasons), reasons
    assert pipeline.drain() == []  # a further full cycle requests nothing


def test_burst_on_s3_with_transient_faults(s3_env, proxy, boto, s3_bucket, database, pg_instance, monkeypatch, soak):
    default = "2000" if soak else "60"  # CI runs a small burst; the soak a large one
    good = int(os.environ.get("RENDER_PIPELINE_SOAK_S3_UPLOADS", default))
    bad = max(1, good // 50)
    objects = {**good_objects(good), **corrupt_objects(bad)}
    for key, data in objects.items():
        boto.put_object(Bucket=s3_bucket, Key=key, Body=data)
    # 2 % of every request fails with SlowDown/500/reset, seeded: botocore and the op retries absorb it.
    proxy.add(status=503, code="SlowDown", fraction=0.01, seed=1)
    proxy.add(status=500, code="InternalError", fraction=0.005, seed=2)
    proxy.add(action="reset", fraction=0.005, seed=3)
    started = time.perf_counter()
    defs = definitions_for(s3_env, presets=PRESETS)
    pipeline, outcomes, tick_errors = _run_burst(defs, pg_instance, good + bad, failing_ticks_ok=True)
    print(f"s3 burst: {sum(r.fired for r in proxy.rules)} faults injected; failed ticks: {tick_errors}")
    proxy.clear()
    result = audit(database, list_keys(boto, s3_bucket, ""), styles=("duotone",), presets=PRESETS)
    _check(pipeline, outcomes, result, good=good, bad=bad, started=started, label="s3 burst")
    assert pipeline.drain() == []
