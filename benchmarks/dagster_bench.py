"""What Dagster costs on top of the render engine, measured against baselines in the same run.

    python benchmarks/dagster_bench.py              # every part
    python benchmarks/dagster_bench.py --quick      # small sizes, to smoke the code in a few minutes
    python benchmarks/dagster_bench.py --parts bd   # some parts
    python benchmarks/dagster_bench.py --parts d --uploads 16   # bursts (b, d) of another size

(a) overhead per render: one upload × one style × one preset through the render job
    (in-process, real PostgreSQL and S3 server) vs the bare `imaging.render` call.
(b) small-image burst: 1 000 uploads of 2 MP × 4 styles at square-1024.
(c) sensor tick time with 1 000 / 10 000 / 100 000 keys in the S3 server: the first tick (all
    new, capped) and a steady-state tick (all known).
(d) realistic burst: 64 uploads of 12 MP photos × 4 styles × the default presets.
(e) latency: with the daemon idle, one upload → its first completed render (and the PostgreSQL
    sessions such a run opens).
(f) run worker memory against batch size: runs of 8 uploads vs runs of 64 (12 MP, default presets).

Parts b, d, e and f run the real stack: boto3 puts into the moto S3 server, `uploads_sensor` in
a `dagster-daemon` (QueuedRunCoordinator, run launcher, run workers as subprocesses of its code
server), DAGSTER_HOME holding the repository's dagster.yaml, Dagster's storage in the embedded
PostgreSQL and the environment `render-pipeline up` gives every process (DAGSTER_RUN_ENV).
Bursts are timed from the first put to the last render row completed or failed, against the
baseline of the engine alone on the same work with as many processes as dagster.yaml has run
slots: `imaging.render_presets` (the engine's own batch: one decode per draft scale, every
preset) per (upload, style).  Each run's line shows its timeline, its step time by stage, its
engine time (the stage timings its rows record), its Dagster events and its worker's peak RSS.

Prints medians, spreads and ratios; nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import psycopg
import yaml
from dagster import instance_for_test

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.dagster_stack import Daemon, RunFacts, Stack  # noqa: E402
from render_pipeline import imaging  # noqa: E402
from render_pipeline_tests.orchestration_helpers import definitions_for, execute, jpeg_bytes, tick  # noqa: E402

RUN_SLOTS = yaml.safe_load((ROOT / "dagster.yaml").read_text())["run_coordinator"]["config"]["max_concurrent_runs"]
PHOTO, SMALL = (4000, 3000), (1600, 1200)  # 12 MP phone photo; ~2 MP
# PostgreSQL flushes a backend's session count within 10 s of it going idle (PGSTAT_IDLE_INTERVAL).
PG_STATS_SETTLE_SECONDS = 11
STEP_STAGES = ("uploads", *imaging.STAGES, "upload")


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def spread(values: Sequence[float], fmt: str = ".0f", unit: str = "") -> str:
    """'median (min–max, n)' of ``values``."""
    return (f"{statistics.median(values):{fmt}}{unit} (min–max {min(values):{fmt}}–{max(values):{fmt}}{unit}, "
            f"n={len(values)})")


def part_a(stack: Stack, repeats: int) -> None:
    env = stack.fresh("bench_a")
    env["RENDER_DEFAULT_STYLES"] = "pop-poster"
    defs = definitions_for(env, presets=("iphone-6.7",))
    data = jpeg_bytes(4000, 3000, seed=7)
    stack.s3.put_object(Bucket=env["MINIO_BUCKET"], Key="uploads/bench/a.jpg", Body=data)
    engine, dagster_runs = [], []
    with instance_for_test() as instance:
        request = tick(defs, instance, "uploads_sensor").run_requests[0]
        for _ in range(repeats):
            started = time.perf_counter()
            imaging.render(data, "pop-poster", "iphone-6.7")
            engine.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert execute(defs, instance, request).success
            dagster_runs.append(time.perf_counter() - started)
    e, d = median_ms(engine), median_ms(dagster_runs)
    print("\n(a) one 12 MP upload → pop-poster @ iphone-6.7 (validate + render + upload + rows)")
    print(f"    engine alone (render())     {e:8.0f} ms")
    print(f"    render job, in process      {d:8.0f} ms   overhead {d - e:6.0f} ms  ({d / e:.2f}×)")


# --- the engine baseline -------------------------------------------------------------------------


def _engine_batch(args: tuple[bytes, str, tuple[str, ...]]) -> int:
    data, style, presets = args
    return sum(len(result.output_png) for result in imaging.render_presets(data, style, presets))


def engine_seconds(images: Sequence[bytes], presets: tuple[str, ...]) -> float:
    """The baseline: `render_presets` per (upload, style) on RUN_SLOTS processes."""
    work = [(data, style, presets) for data in images for style in imaging.STYLES]
    with ProcessPoolExecutor(max_workers=RUN_SLOTS) as pool:
        started = time.perf_counter()
        list(pool.map(_engine_batch, work, chunksize=max(1, len(work) // 256)))
        return time.perf_counter() - started


# --- the daemon stack ----------------------------------------------------------------------------


def print_runs(runs: Sequence[RunFacts], origins: Sequence[float], t0_is: str) -> None:
    """Where each run's time went: when (s after t0, its latest origin before it was created)
    it was created, launched by the daemon, had its worker up, started and ended; its wall,
    engine and step time by stage."""

    def num(value: float | None, fmt: str) -> str:
        return f"{value:{fmt}}" if value is not None else "-"

    print(f"    runs, s after t0 = {t0_is}: created launched worker-up started ended | "
          "uploads  wall engine  Dagster/upload | events  peak RSS | step seconds by stage")
    for run in runs:
        t0 = max((origin for origin in origins if origin <= run.created), default=min(origins))

        def at(ts: float | None) -> str:
            return f"{ts - t0:6.1f}" if ts else "     -"

        stages = " ".join(f"{stage} {run.steps_s[stage]:.1f}" for stage in STEP_STAGES if stage in run.steps_s)
        print(f"      {at(run.created)} {at(run.launched)} {at(run.worker_up)} {at(run.started)} {at(run.ended)} | "
              f"{run.uploads:3d} {num(run.wall_s, '6.1f')} {run.engine_s:6.1f} "
              f"{num(run.dagster_ms_per_upload, '6.0f')} ms | {run.events:5d} {num(run.peak_mib, '5.0f')} MiB | "
              f"{stages}  [{run.job} {run.status}]")


def print_run_summary(runs: Sequence[RunFacts]) -> None:
    """Figures 3 and 5 over a set of render runs."""
    per_upload = [r.dagster_ms_per_upload for r in runs if r.dagster_ms_per_upload is not None]
    if per_upload:
        print(f"    Dagster work per upload in a run, (run wall − engine) / uploads: {spread(per_upload, unit=' ms')}"
              "  (target ≤ 30 ms)")
    print(f"    Dagster events per run: {spread([r.events for r in runs])}; "
          f"per upload {spread([r.events / r.uploads for r in runs if r.uploads], '.1f')}")
    peaks = [r.peak_mib for r in runs if r.peak_mib]
    if peaks:
        print(f"    run worker peak RSS (VmHWM): {spread(peaks, unit=' MiB')}, runs of "
              f"{min(r.uploads for r in runs)}–{max(r.uploads for r in runs)} uploads")


def burst(stack: Stack, part: str, name: str, uploads: int, size: tuple[int, int], presets: tuple[str, ...],
          target: float) -> None:
    """``uploads`` images of ``size`` put at once, vs the engine alone on the same renders."""
    images = [jpeg_bytes(*size, seed=i % 8) for i in range(uploads)]
    expected = uploads * len(imaging.STYLES) * len(presets)
    engine = engine_seconds(images, presets)
    with Daemon(stack, name, presets, images[0]) as daemon:
        daemon.start()
        daemon.wait_until_sensing()  # daemon and code server start-up: not part of the measurement
        cpu_before, own_cpu = dict(daemon.sampler.cpu_s), time.process_time()
        t0, _ = daemon.put(images)
        put_s = time.time() - t0
        dagster = daemon.wait_renders(expected) - t0
        cpu_after, own_cpu = dict(daemon.sampler.cpu_s), time.process_time() - own_cpu
        daemon.wait_runs_finished(1)
        runs = [r for r in daemon.runs() if r.uploads]
        ticks = daemon.sensor_ticks()
        cpu = daemon.sampler.cpu_by_role(cpu_before, cpu_after, {r.pid: "run workers" for r in runs if r.pid})
        cpu["this process (moto S3 server, puts, polling)"] = own_cpu
    megapixels = size[0] * size[1] / 1e6
    print(f"\n({part}) burst: {uploads} uploads ({size[0]}×{size[1]} JPEG, {megapixels:.1f} MP) × "
          f"{len(imaging.STYLES)} styles × {len(presets)} preset(s) ({','.join(presets)}) = {expected} renders")
    print(f"    baseline, engine alone: render_presets per (upload, style) on {RUN_SLOTS} processes "
          f"{engine:7.1f} s  {expected / engine:6.1f} renders/s")
    print(f"    S3 → sensor → daemon → {RUN_SLOTS} run slots, first put → last row   "
          f"{dagster:7.1f} s  {expected / dagster:6.1f} renders/s  {engine / dagster:.0%} of engine-only "
          f"(target ≥ {target:.0%})")
    print(f"    puts (8 threads) took {put_s:.1f} s; CPU seconds from the first put to the last row, of "
          f"{os.cpu_count() * dagster:.0f} on {os.cpu_count()} cores: "
          + ", ".join(f"{role} {seconds:.0f}" for role, seconds in cpu.items()))
    last_request = max(r.created for r in runs)
    print("    uploads_sensor ticks from t0 to the last run request, s after t0 (duration, runs requested): "
          + ", ".join(f"{tick.timestamp - t0:.1f} ({(tick.end_timestamp or tick.timestamp) - tick.timestamp:.1f} s, "
                      f"{len(tick.run_ids)})" for tick in reversed(ticks) if t0 <= tick.timestamp <= last_request))
    print_runs(runs, [t0], "the first put")
    print_run_summary(runs)


def part_e(stack: Stack, repeats: int, idle_seconds: float) -> None:
    """One upload into an idle daemon, ``repeats`` times: time to its first completed render,
    and the sessions opened while its run is the only one (minus the idle rate)."""
    data = jpeg_bytes(*PHOTO, seed=3)
    presets = imaging.DEFAULT_PRESET_IDS
    latencies, opened, puts = [], [], []
    with Daemon(stack, "bench_e", presets, data) as daemon:
        daemon.start()
        daemon.wait_until_sensing()
        time.sleep(PG_STATS_SETTLE_SECONDS)
        idle = daemon.sessions.idle_rate(idle_seconds)
        for repeat in range(repeats):
            before, window_start = daemon.sessions.read(), time.time()
            t0, (key,) = daemon.put([data])
            latencies.append(daemon.first_completed(key) - t0)
            daemon.wait_runs_finished(repeat + 1)
            time.sleep(PG_STATS_SETTLE_SECONDS)
            after, window = daemon.sessions.read(), time.time() - window_start
            opened.append({label: (after[label] - before[label], idle[label] * window) for label in idle})
            puts.append(t0)
        runs = daemon.runs()
        ticks = sorted(tick.timestamp for tick in daemon.sensor_ticks() if tick.timestamp >= puts[0])
        version = daemon.sessions.version
    print(f"\n(e) latency, idle daemon: one {PHOTO[0]}×{PHOTO[1]} upload (default presets, "
          f"{len(imaging.STYLES)} styles) → its first completed render row, {repeats} fresh keys")
    print(f"    put → first render completed: {spread(latencies, '.1f', ' s')}  (target ≤ 15 s)")
    print(f"    uploads_sensor tick start to start (minimum_interval_seconds 5): "
          f"{spread([b - a for a, b in zip(ticks, ticks[1:])], '.1f', ' s')}")
    print(f"    PostgreSQL {version} sessions opened per run (pg_stat_database.sessions sampled before the put and "
          f"{PG_STATS_SETTLE_SECONDS} s after the run ended, only that run executing; idle rate over "
          f"{idle_seconds:.0f} s before: {idle['dagster'] * 60:.0f}/min Dagster, {idle['app'] * 60:.0f}/min app):")
    for label in idle:
        print(f"      {label} database: raw {spread([raw for raw, _ in (o[label] for o in opened)])}, minus the idle "
              f"rate {spread([raw - background for raw, background in (o[label] for o in opened)])}")
    print_runs(runs, puts, "the run's put")
    print(f"    Dagster events per run: {spread([r.events for r in runs])}")


def part_f(stack: Stack, sizes: tuple[int, int], idle_seconds: float) -> None:
    """Worker memory against batch size, through the sensor: 2N uploads staged before the
    daemon starts are one tick's work, which the sensor splits into exactly two runs of N."""
    presets = imaging.DEFAULT_PRESET_IDS
    photos = [jpeg_bytes(*PHOTO, seed=i) for i in range(8)]
    print(f"\n(f) run worker peak RSS against batch size: 2N staged uploads ({PHOTO[0]}×{PHOTO[1]}, default presets, "
          f"{len(imaging.STYLES)} styles), daemon started after the puts → its first tick makes two runs of N")
    peaks: dict[int, list[float]] = {}
    for n in sizes:
        with Daemon(stack, f"bench_f{n}", presets, photos[0]) as daemon:
            daemon.put([photos[i % 8] for i in range(2 * n)])
            t0 = daemon.start()
            daemon.wait_runs_created(2)
            created, window_start = daemon.sessions.read(), time.time()
            daemon.wait_renders(2 * n * len(imaging.STYLES) * len(presets))
            daemon.wait_runs_finished(2)
            time.sleep(PG_STATS_SETTLE_SECONDS)
            ended, window = daemon.sessions.read(), time.time() - window_start
            idle = daemon.sessions.idle_rate(idle_seconds)
            runs = daemon.runs()
        render_runs = [r for r in runs if r.uploads]
        peaks[n] = [r.peak_mib for r in render_runs if r.peak_mib]
        raw = {label: (ended[label] - created[label]) / len(render_runs) for label in idle}
        background = {label: idle[label] * window / len(render_runs) for label in idle}
        print(f"    N = {n}: render runs of {sorted(r.uploads for r in render_runs)} uploads; worker peak RSS "
              f"{', '.join(f'{p:.0f}' for p in peaks[n])} MiB; PostgreSQL sessions opened per run (from the runs' "
              f"creation to {PG_STATS_SETTLE_SECONDS} s after they ended, divided by the runs; raw / minus "
              f"the idle rate over {idle_seconds:.0f} s after): " + ", ".join(
                  f"{label} {raw[label]:.0f} / {raw[label] - background[label]:.0f}" for label in idle))
        print_runs(runs, [t0], "daemon start, after the puts")
    small, large = sizes
    if peaks[small] and peaks[large]:
        print(f"    {large} vs {small} uploads per run: peak {max(peaks[large]):.0f} vs {max(peaks[small]):.0f} MiB = "
              f"{max(peaks[large]) / max(peaks[small]):.2f}× (target ≤ 1.3×); {large}-upload peak "
              f"{max(peaks[large]) / 1024:.2f} GiB (target ≤ 1 GiB)")


def part_c(stack: Stack, sizes: list[int]) -> None:
    print("\n(c) uploads_sensor tick time (median of 3), keys in the S3 server")
    print("    keys      first tick (new, capped)   steady tick (all known)")
    for size in sizes:
        env = stack.fresh(f"bench_c_{size}")
        defs = definitions_for(env)
        with ThreadPoolExecutor(max_workers=16) as pool:  # setup only: fill the bucket quickly
            list(pool.map(lambda i: stack.s3.put_object(Bucket=env["MINIO_BUCKET"], Key=f"uploads/k{i:06d}/x.jpg",
                                                        Body=b"x"), range(size)))
        pages = stack.s3.get_paginator("list_objects_v2").paginate(Bucket=env["MINIO_BUCKET"], Prefix="uploads/")
        etags = {o["Key"]: o["ETag"].strip('"') for page in pages for o in page.get("Contents", [])}
        with instance_for_test() as instance:
            started = time.perf_counter()
            first = tick(defs, instance, "uploads_sensor")
            first_seconds = time.perf_counter() - started
            with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn, conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO assets (id, partition_key, object_key, etag, status) "
                    "VALUES (gen_random_uuid(), %s, %s, %s, 'valid') ON CONFLICT (object_key) DO UPDATE "
                    "SET status='valid', etag=EXCLUDED.etag",
                    [(k[len("uploads/"):], k, e) for k, e in etags.items()],
                )
            steady, cursor = [], first.cursor
            for _ in range(3):
                started = time.perf_counter()
                cursor = tick(defs, instance, "uploads_sensor", cursor=cursor).cursor
                steady.append(time.perf_counter() - started)
        print(f"    {size:>7}   {first_seconds * 1000:10.0f} ms ({len(first.run_requests)} runs)"
              f"        {median_ms(steady):8.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", default="abcdef")
    parser.add_argument("--uploads", type=int, help="uploads in each burst (parts b and d) instead of their size")
    args = parser.parse_args()
    quick = args.quick
    if args.uploads is not None and args.uploads < 1:
        parser.error(f"--uploads {args.uploads}: a burst needs at least one upload")
    workdir = Path(tempfile.mkdtemp(prefix="render-bench-"))
    stack = Stack(workdir)
    try:
        if "a" in args.parts:
            part_a(stack, repeats=3 if quick else 7)
        if "b" in args.parts:
            burst(stack, "b", "bench_b", uploads=args.uploads or (20 if quick else 1000), size=SMALL, presets=("square-1024",),
                  target=0.50)
        if "c" in args.parts:
            part_c(stack, [1000] if quick else [1000, 10000, 100000])
        if "d" in args.parts:
            burst(stack, "d", "bench_d", uploads=args.uploads or (4 if quick else 64), size=PHOTO, presets=imaging.DEFAULT_PRESET_IDS,
                  target=0.85)
        if "e" in args.parts:
            part_e(stack, repeats=2 if quick else 6, idle_seconds=6 if quick else 30)
        if "f" in args.parts:
            part_f(stack, (1, 2) if quick else (8, 64), idle_seconds=6 if quick else 30)
    finally:
        stack.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
