"""How fast the uploads sensor finds a new upload in a big bucket, with and without events.

    .venv/bin/python -m benchmarks.intake_bench                       # 100 000, then 1 000 000
    .venv/bin/python -m benchmarks.intake_bench --uploads 100000      # one size, a few minutes
    .venv/bin/python -m benchmarks.intake_bench --home /tmp/intake --keep   # keep the filled store

Per size: a local-store directory holds N empty uploads (`uploads/k{n}/p.jpg`, one folder
each, as real uploads have; only the listing reads them) and the app database (embedded
PostgreSQL) their rows.  A child process — its peak RSS (ru_maxrss) is the sensor's — evaluates
`uploads_sensor` in process against a Dagster instance on PostgreSQL (`PooledPostgresStorage`)
and times:

(a) the first tick of a fresh deployment on the full bucket (nothing known: 400 claimed,
    their partitions added), then the steady tick (every upload settled; 5 pages read);
(b) the full listing cycle: measured by ticking through it when it takes at most
    --measure-cycle-ticks ticks, else ticks × (steady tick + the 5 s sensor interval);
(c) detection latency of one new upload at a random key: without events the cycle must come
    round to it (the expected wait is half a cycle, at worst a whole one); with events (rows
    written as MinIO's notify_postgres writes them) it is one tick;
(d) a tick's Dagster lookups for 400 claimed uploads at --partitions partitions: one
    `has_dynamic_partition` per upload (before) against one `get_existing_dynamic_partitions`.

Prints medians and ratios; nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from render_pipeline.keys import asset_id_for  # noqa: E402
from render_pipeline.render import sensors  # noqa: E402
from render_pipeline.render.partitions import uploads_partitions  # noqa: E402
from render_pipeline.resources.embedded_postgres import embedded_server, ensure_database, stop_embedded_server  # noqa: E402
from render_pipeline.resources.object_store import LocalObjectStore  # noqa: E402
from render_pipeline.settings import load_settings  # noqa: E402
from render_pipeline.store import migrations  # noqa: E402
from render_pipeline.store.upload_events import table_identifier  # noqa: E402

SIZES = (100_000, 1_000_000)
SENSOR_INTERVAL_SECONDS = 5
EVENTS_TABLE = "minio_events"
BUCKET = "render-assets"
TARGET_TICK_SECONDS = 10.0
FIXED_MTIME_NS = 1_700_000_000 * 10**9  # one mtime for every file: one ETag for every upload


def upload_key(n: int) -> str:
    return f"uploads/k{n:07d}/p.jpg"


def fill(root: Path, count: int) -> float:
    """``count`` empty uploads under ``root`` (kept from an earlier run when already there)."""
    uploads = root / "uploads"
    marker = root / f".filled-{count}"
    if marker.exists():
        return 0.0
    shutil.rmtree(root, ignore_errors=True)
    uploads.mkdir(parents=True)
    started = time.perf_counter()

    def make(chunk: range) -> None:
        for n in chunk:
            folder = root / upload_key(n).rsplit("/", 1)[0]
            folder.mkdir()
            path = folder / "p.jpg"
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
            os.utime(path, ns=(FIXED_MTIME_NS, FIXED_MTIME_NS))

    step = 10_000
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(make, (range(i, min(i + step, count)) for i in range(0, count, step))))
    marker.touch()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, action="append", help="size (repeatable; default 100 000 and 1 000 000)")
    parser.add_argument("--partitions", type=int, default=100_000, help="Dagster partitions for part d")
    parser.add_argument("--measure-cycle-ticks", type=int, default=25)
    parser.add_argument("--home", type=Path)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("ROOT", "COUNT", "PG_URI"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root, count, uri = args.child
        print(json.dumps(measure(Path(root), int(count), uri, args.partitions, args.measure_cycle_ticks)))
        return
    home = args.home or Path(tempfile.mkdtemp(prefix="intake_bench_"))
    try:
        server = embedded_server(home / "pg")
        for count in args.uploads or SIZES:
            root = home / f"store-{count}"
            seconds = fill(root, count)
            print(f"\n{count:,} uploads in {root}" + (f" (filled in {seconds:.0f} s)" if seconds else " (kept)"))
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.intake_bench", "--child", str(root), str(count), server.get_uri(),
                 "--partitions", str(args.partitions), "--measure-cycle-ticks", str(args.measure_cycle_ticks)],
                cwd=ROOT, capture_output=True, text=True, check=False,
            )
            if child.returncode != 0:
                sys.exit(f"measuring {count} uploads failed:\n{child.stderr[-4000:]}")
            report(count, json.loads(child.stdout.strip().splitlines()[-1]))
    finally:
        stop_embedded_server(home / "pg")
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


def report(count: int, r: dict) -> None:
    ticks_per_cycle = math.ceil(count / (sensors.LIST_PAGE_SIZE * sensors.MAX_PAGES_PER_TICK))
    steady = statistics.median(r["steady"])
    print(f"  (a) first tick {r['first']:.2f} s ({r['first_claimed']} claimed); steady tick median {steady:.2f} s "
          f"({min(r['steady']):.2f}–{max(r['steady']):.2f}, n={len(r['steady'])}; target ≤ {TARGET_TICK_SECONDS:.0f} s: "
          f"{steady / TARGET_TICK_SECONDS:.2f}× of it)")
    how = "measured" if r["cycle_measured"] else f"{ticks_per_cycle} ticks × (steady tick + {SENSOR_INTERVAL_SECONDS} s)"
    print(f"  (b) full listing cycle {_duration(r['cycle'])} ({how})")
    without, events = r["cycle"] / 2, statistics.median(r["events"])
    measured = r["without_measured"]
    print(f"  (c) new upload → requested: with events {events:.2f} s median (+ ≤ {SENSOR_INTERVAL_SECONDS} s "
          f"waiting for the tick); without, {'measured ' + _duration(measured) + ' at a random key, ' if measured else ''}"
          f"expected {_duration(without)}, worst {_duration(r['cycle'])}: {without / events:.0f}× the events' latency")
    per_key, batched = statistics.median(r["per_key"]), statistics.median(r["batched"])
    print(f"  (d) Dagster lookups for {sensors.MAX_UPLOADS_PER_TICK} uploads at {r['partitions']:,} partitions: "
          f"per key {per_key * 1000:.0f} ms, one batch {batched * 1000:.1f} ms ({per_key / batched:.0f}×)")
    print(f"  sensor process peak RSS {r['maxrss_mib']:.0f} MiB")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def measure(root: Path, count: int, admin_uri: str, partitions: int, cycle_ticks: int) -> dict:
    from benchmarks.scale_partitions import _instance, partition_key
    from render_pipeline.definitions import build_definitions
    from render_pipeline_tests.orchestration_helpers import tick

    url = _fresh_database(admin_uri, f"intake_bench_{count}")
    env = {"DATABASE_URL": url, "LOCAL_STORE_ROOT": str(root), "RENDER_PIPELINE_HOME": str(root.parent),
           "MINIO_BUCKET": BUCKET, "RENDER_DEFAULT_PRESETS": "square-1024"}
    os.environ.update(env)
    plain = build_definitions(load_settings(env))
    with_events = build_definitions(load_settings({**env, "RENDER_EVENTS_TABLE": EVENTS_TABLE}))
    store = LocalObjectStore(root=str(root))
    with tempfile.TemporaryDirectory() as directory:
        instance = _instance(admin_uri, Path(directory))
        result: dict = {"partitions": partitions}
        started = time.perf_counter()
        first = tick(plain, instance, "uploads_sensor")
        result["first"], result["first_claimed"] = time.perf_counter() - started, len(_claimed(url))
        _settle_all(url, count, store.head(upload_key(0)).etag)
        cursor, result["steady"] = first.cursor, []
        for _ in range(5):
            started = time.perf_counter()
            cursor = tick(plain, instance, "uploads_sensor", cursor).cursor
            result["steady"].append(time.perf_counter() - started)
        result.update(_cycle(plain, instance, store, url, cursor, count, cycle_ticks, statistics.median(result["steady"])))
        result["events"] = _with_events(with_events, instance, store, url, cursor)
        keys = [partition_key(n) for n in range(partitions)]
        for start in range(0, partitions, 10_000):
            instance.add_dynamic_partitions(uploads_partitions.name, keys[start:start + 10_000])
        probe = random.Random(1).sample(keys, sensors.MAX_UPLOADS_PER_TICK)
        result["per_key"] = [_seconds(lambda: [instance.has_dynamic_partition(uploads_partitions.name, k) for k in probe])
                             for _ in range(3)]
        result["batched"] = [_seconds(lambda: instance.get_existing_dynamic_partitions(uploads_partitions.name, probe))
                             for _ in range(3)]
        instance.dispose()
    result["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _cycle(defs, instance, store, url, cursor, count, cycle_ticks, steady) -> dict:
    """A whole listing cycle from its start, then how long a new upload at a random key waits
    without events (from where the listing then stands); computed when the cycle is too long."""
    from render_pipeline_tests.orchestration_helpers import tick

    ticks_per_cycle = math.ceil(count / (sensors.LIST_PAGE_SIZE * sensors.MAX_PAGES_PER_TICK))
    if ticks_per_cycle > cycle_ticks:
        return {"cycle": ticks_per_cycle * (steady + SENSOR_INTERVAL_SECONDS), "cycle_measured": False,
                "without_measured": None}

    def ticks_until(done) -> float:
        nonlocal cursor
        waited = 0.0
        for _ in range(ticks_per_cycle + 1):
            started = time.perf_counter()
            cursor = tick(defs, instance, "uploads_sensor", cursor).cursor
            waited += time.perf_counter() - started + SENSOR_INTERVAL_SECONDS
            if done():
                return waited
        raise AssertionError("not done within a cycle")

    cursor = sensors.ListingCursor().serialize()
    cycle = ticks_until(lambda: json.loads(cursor)["cycle"] == 1)
    key = f"uploads/k{random.Random(2).randrange(count):07d}-new/p.jpg"
    store.put(key, b"")
    return {"cycle": cycle, "cycle_measured": True, "without_measured": ticks_until(lambda: key in _claimed(url))}


def _with_events(defs, instance, store, url, cursor) -> list[float]:
    """Put a new upload and its MinIO event, then tick: the upload is claimed in that tick."""
    from render_pipeline_tests.orchestration_helpers import tick

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (event_time TIMESTAMP WITH TIME ZONE NOT NULL, "
                             "event_data JSONB)").format(table_identifier(EVENTS_TABLE)))
    samples = []
    for n in range(5):
        key = f"uploads/zz-event-{n}/p.jpg"
        started = time.perf_counter()
        info = store.put(key, b"")
        _insert_event(url, key, info.etag)
        cursor = tick(defs, instance, "uploads_sensor", cursor).cursor
        samples.append(time.perf_counter() - started)
        assert key in _claimed(url), f"{key} was not requested in the tick after its event"
    return samples


def _insert_event(url: str, key: str, etag: str) -> None:
    from render_pipeline_tests.render.test_upload_events import minio_event

    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("INSERT INTO {} (event_time, event_data) VALUES (%s, %s)").format(
            table_identifier(EVENTS_TABLE)), (now, json.dumps(minio_event(BUCKET, key, etag, 0, now))))


def _fresh_database(admin_uri: str, name: str) -> str:
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    ensure_database(admin_uri, name)
    url = psycopg.conninfo.make_conninfo(admin_uri, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        migrations.upgrade(conn)
        migrations.seed(conn)
    return url


def _settle_all(url: str, count: int, etag: str) -> None:
    """Every upload validated: the steady state a tick mostly sees."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM assets")  # the first tick's claims, validated below like the rest
        with conn.cursor().copy("COPY assets (id, partition_key, object_key, etag, status) FROM STDIN") as copy:
            for n in range(count):
                key = upload_key(n)
                copy.write_row((asset_id_for(key), key[len("uploads/"):], key, etag, "valid"))
        conn.execute("ANALYZE assets")


def _claimed(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT object_key FROM assets WHERE status = 'registered'")}


def _seconds(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
