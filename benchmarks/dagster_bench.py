"""What Dagster costs on top of the render engine, measured against baselines in the same run.

    python benchmarks/dagster_bench.py            # all three parts
    python benchmarks/dagster_bench.py --quick    # smaller sizes, for a smoke run

(a) overhead per render: one upload × one style × one preset through the render job
    (in-process, real PostgreSQL and S3 server) vs the bare `imaging.render` call.
(b) burst: N uploads put through boto3 into the S3 server, picked up by the uploads sensor in a
    real `dagster-daemon` (queued runs, run launcher, run workers) vs the engine alone rendering
    the same work with the same number of worker processes.
(c) sensor tick time with 1 000 / 10 000 / 100 000 keys in the S3 server: the first tick (all
    new, capped) and a steady-state tick (all known).

Prints medians and ratios; nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import boto3
import psycopg
from dagster import instance_for_test

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from render_pipeline import imaging  # noqa: E402
from render_pipeline.resources.embedded_postgres import embedded_server, ensure_database  # noqa: E402
from render_pipeline.store import migrations  # noqa: E402
from render_pipeline_tests.orchestration_helpers import definitions_for, execute, jpeg_bytes, tick  # noqa: E402

ACCESS, SECRET = "bench-access", "bench-secret"
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request


class Stack:
    """Embedded PostgreSQL + moto S3 server for one benchmark run."""

    def __init__(self, workdir: Path) -> None:
        from moto.server import ThreadedMotoServer

        self.workdir = workdir
        self.server = embedded_server(workdir / "pg")
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.s3 = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS,
                               aws_secret_access_key=SECRET, region_name="us-east-1")

    def fresh(self, name: str) -> dict[str, str]:
        """A migrated database and an empty bucket; returns the env for the project."""
        ensure_database(self.server.get_uri(), name)
        url = self.server.get_uri(name)
        with psycopg.connect(url, autocommit=True) as conn:
            migrations.upgrade(conn)
            migrations.seed(conn)
        bucket = name.replace("_", "-")
        self.s3.create_bucket(Bucket=bucket)
        env = {"DATABASE_URL": url, "MINIO_ENDPOINT": self.endpoint, "MINIO_ACCESS_KEY": ACCESS,
               "MINIO_SECRET_KEY": SECRET, "MINIO_BUCKET": bucket}
        os.environ.update(env)
        return env

    def close(self) -> None:
        self.moto.stop()
        from render_pipeline.resources.embedded_postgres import stop_embedded_server

        stop_embedded_server(self.workdir / "pg")


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


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


def _engine_work(args: tuple[bytes, str, str]) -> int:
    data, style, preset = args
    return len(imaging.render(data, style, preset).output_png)


def part_b(stack: Stack, uploads: int, presets: tuple[str, ...], workers: int) -> None:
    env = stack.fresh("bench_b")
    images = [jpeg_bytes(1600, 1200, seed=i % 8) for i in range(uploads)]
    styles = list(imaging.STYLES)
    work = [(images[i], s, p) for i in range(uploads) for s in styles for p in presets]

    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_engine_work, work, chunksize=4))
    engine_seconds = time.perf_counter() - started

    home = stack.workdir / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    ensure_database(stack.server.get_uri(), "bench_dagster")
    daemon_env = {
        **os.environ, **env, "DAGSTER_HOME": str(home), "RENDER_DEFAULT_PRESETS": ",".join(presets),
        "DAGSTER_PG_URL": stack.server.get_uri("bench_dagster").replace("postgresql://", "postgresql+psycopg2://"),
    }
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
        env=daemon_env, cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(10)  # daemon and code server start; not part of the measurement
        expected = uploads * len(styles) * len(presets)
        started = time.perf_counter()
        for i, data in enumerate(images):
            stack.s3.put_object(Bucket=env["MINIO_BUCKET"], Key=f"uploads/u{uuid.uuid4().hex[:8]}/{i}.jpg", Body=data)
        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
            while True:
                done = conn.execute("SELECT count(*) FROM renders WHERE status IN ('completed','failed')").fetchone()[0]
                if done >= expected or time.perf_counter() - started > 1800:
                    break
                time.sleep(1)
        dagster_seconds = time.perf_counter() - started
        finished_at = time.time()
    finally:
        daemon.terminate()
        daemon.wait(60)
    _print_run_timeline(home, daemon_env, finished_at - dagster_seconds)
    print(f"\n(b) burst: {uploads} uploads × {len(styles)} styles × {len(presets)} preset(s) = {expected} renders")
    print(f"    engine alone, {workers} processes     {engine_seconds:7.1f} s  {expected / engine_seconds:6.1f} renders/s")
    print(f"    S3 → sensor → daemon → runs       {dagster_seconds:7.1f} s  {done / dagster_seconds:6.1f} renders/s"
          f"  ({engine_seconds / dagster_seconds:.0%} of engine-only; includes sensor interval and run start-up)")


def _print_run_timeline(home: Path, env: dict[str, str], t0: float) -> None:
    """Where the burst's wall time went: each run's queue wait, start-up and execution."""
    from dagster import DagsterInstance

    os.environ["DAGSTER_PG_URL"] = env["DAGSTER_PG_URL"]
    with DagsterInstance.from_config(str(home)) as instance:
        records = sorted(instance.get_run_records(), key=lambda r: r.create_timestamp.timestamp())
        print("    runs (seconds after the first put): created  started  ended  job  partitions")
        for record in records:
            run, created = record.dagster_run, record.create_timestamp.timestamp() - t0
            started = (record.start_time or t0) - t0
            ended = (record.end_time or t0) - t0
            span = run.tags.get("dagster/asset_partition_range_start", run.tags.get("dagster/partition", "-"))
            events = len(instance.get_records_for_run(run.run_id, limit=100000).records)
            print(f"      {created:6.1f} {started:7.1f} {ended:7.1f}  {run.job_name:<22} {span[:24]:<24} "
                  f"{events} events  {run.status.value}")


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
    parser.add_argument("--parts", default="abc")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="render-bench-"))
    stack = Stack(workdir)
    try:
        if "a" in args.parts:
            part_a(stack, repeats=3 if args.quick else 7)
        if "b" in args.parts:
            part_b(stack, uploads=20 if args.quick else 200, presets=("square-1024",), workers=os.cpu_count() or 2)
        if "c" in args.parts:
            part_c(stack, [1000] if args.quick else [1000, 10000, 100000])
    finally:
        stack.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
