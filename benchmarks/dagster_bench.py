"""What Dagster costs on top of the render engine, measured against baselines in the same run.

    python benchmarks/dagster_bench.py              # every part
    python benchmarks/dagster_bench.py --quick      # small sizes, to smoke the code in a few minutes
    python benchmarks/dagster_bench.py --parts bd   # some parts

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
import logging
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import psycopg
import yaml
from dagster import DagsterEventType, DagsterInstance, instance_for_test

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from render_pipeline import imaging  # noqa: E402
from render_pipeline.commands.up import DAGSTER_RUN_ENV  # noqa: E402
from render_pipeline.keys import asset_id_for  # noqa: E402
from render_pipeline.resources.embedded_postgres import (  # noqa: E402
    dagster_storage_url,
    embedded_server,
    ensure_database,
    stop_embedded_server,
)
from render_pipeline.store import migrations  # noqa: E402
from render_pipeline_tests.orchestration_helpers import definitions_for, execute, jpeg_bytes, tick  # noqa: E402

ACCESS, SECRET = "bench-access", "bench-secret"
RUN_SLOTS = yaml.safe_load((ROOT / "dagster.yaml").read_text())["run_coordinator"]["config"]["max_concurrent_runs"]
PHOTO, SMALL = (4000, 3000), (1600, 1200)  # 12 MP phone photo; ~2 MP
# PostgreSQL flushes a backend's session count within 10 s of it going idle (PGSTAT_IDLE_INTERVAL).
PG_STATS_SETTLE_SECONDS = 11
WORKER_STARTED = re.compile(r"Started process for run \(pid: (\d+)\)")  # the run worker's first event
STEP_STAGES = ("uploads", *imaging.STAGES, "upload")
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

    def drop_objects(self) -> None:
        """Forget every bucket and object (moto keeps them in memory; a burst writes gigabytes)."""
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")).close()

    def close(self) -> None:
        self.moto.stop()
        stop_embedded_server(self.workdir / "pg")


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


class ProcessSampler(threading.Thread):
    """Every 0.2 s, each process in the trees of ``roots`` (role → pid): its peak RSS (VmHWM)
    and its CPU time so far, both kept after it exits.

    The kernel keeps each process's high-water mark, so a sample only has to land before the
    process exits; the run workers are children of the daemon's code server.
    """

    def __init__(self, roots: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.peak_kib: dict[int, int] = {}
        self.cpu_s: dict[int, float] = {}
        self.role: dict[int, str] = {}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.2):
            parents, cpu = _process_table()
            for role, root in self.roots.items():
                for pid in _tree(parents, root):
                    self.role[pid], self.cpu_s[pid] = role, cpu[pid]
                    kib = _vm_hwm_kib(pid)
                    if kib:
                        self.peak_kib[pid] = max(kib, self.peak_kib.get(pid, 0))

    def cpu_by_role(self, since: dict[int, float], until: dict[int, float], roles: dict[int, str]) -> dict[str, float]:
        """CPU seconds each role used between two snapshots of ``cpu_s``; ``roles`` overrides
        the role of some pids (the run workers)."""
        used: dict[str, float] = {}
        for pid, seconds in until.items():
            role = roles.get(pid, self.role[pid])
            used[role] = used.get(role, 0.0) + seconds - since.get(pid, 0.0)
        return used

    def stop(self) -> None:
        self._done.set()
        self.join()


def _process_table() -> tuple[dict[int, int], dict[int, float]]:
    """Every process's parent and CPU time (user + system, s) from /proc/<pid>/stat."""
    parents, cpu, tick = {}, {}, os.sysconf("SC_CLK_TCK")
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(entry.path, "stat").read_text().rpartition(")")[2].split()
            except OSError:  # exited meanwhile
                continue
            pid = int(entry.name)
            parents[pid], cpu[pid] = int(fields[1]), (int(fields[11]) + int(fields[12])) / tick
    return parents, cpu


def _tree(parents: dict[int, int], root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, frontier = [root] if root in parents else [], [root]
    while frontier:
        kids = children.get(frontier.pop(), [])
        found += kids
        frontier += kids
    return found


def _vm_hwm_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class SessionCounter:
    """`pg_stat_database.sessions` (PostgreSQL ≥ 14) of the Dagster and app databases, read
    from the `postgres` database so that reading does not count."""

    def __init__(self, stack: Stack, databases: dict[str, str]) -> None:
        self.conn = psycopg.connect(stack.server.get_uri(), autocommit=True)
        self.databases = databases  # label → database name
        self.version = self.conn.execute("SHOW server_version").fetchone()[0]

    def read(self) -> Counter:
        rows = self.conn.execute("SELECT datname, sessions FROM pg_stat_database WHERE datname = ANY(%s)",
                                 (list(self.databases.values()),)).fetchall()
        by_name = dict(rows)
        return Counter({label: by_name.get(name, 0) for label, name in self.databases.items()})

    def idle_rate(self, seconds: float) -> dict[str, float]:
        """Sessions per second opened while nothing runs (sensor ticks, daemon loops)."""
        before = self.read()
        time.sleep(seconds)
        after = self.read()
        return {label: (after[label] - before[label]) / seconds for label in self.databases}

    def close(self) -> None:
        self.conn.close()


@dataclass
class RunFacts:
    """One run as the bench reports it (timestamps in epoch seconds)."""

    run_id: str
    job: str
    status: str
    uploads: int
    created: float
    launched: float | None
    worker_up: float | None
    started: float | None
    ended: float | None
    events: int
    pid: int | None
    peak_mib: float | None
    engine_s: float
    steps_s: dict[str, float] = field(default_factory=dict)

    @property
    def wall_s(self) -> float | None:
        return self.ended - self.started if self.started and self.ended else None

    @property
    def dagster_ms_per_upload(self) -> float | None:
        wall = self.wall_s
        return (wall - self.engine_s) * 1000 / self.uploads if wall is not None and self.uploads else None


class Daemon:
    """A real `dagster-daemon` on a fresh app database, bucket and Dagster storage.

    Dagster's tables are created by this process's instance before the daemon starts; the
    instance then reads runs and events while the daemon works.  Stopping kills the daemon's
    whole process group (code server and run workers included) and drops the S3 objects.
    """

    def __init__(self, stack: Stack, name: str, presets: Sequence[str], sample: bytes) -> None:
        """``sample``: any of the part's uploads (they all have its dimensions)."""
        self.stack = stack
        # Presets that share a draft scale share one decode, whose time each of their rows
        # repeats: a decode is counted from the first preset of its group only.
        groups = imaging.draft_groups(imaging.read_info(sample), [imaging.get_preset(p) for p in presets])
        self.decoding_presets = {group[0].id for group in groups.values()}
        self.env = stack.fresh(name)
        dagster_db = f"{name}_dagster"
        ensure_database(stack.server.get_uri(), dagster_db)
        self.home = stack.workdir / f"{name}_home"
        self.home.mkdir()
        shutil.copyfile(ROOT / "dagster.yaml", self.home / "dagster.yaml")
        self.daemon_env = {
            **os.environ, **self.env, **DAGSTER_RUN_ENV, "DAGSTER_HOME": str(self.home),
            "RENDER_DEFAULT_PRESETS": ",".join(presets),
            "DAGSTER_PG_URL": dagster_storage_url(stack.server.get_uri(), dagster_db),
        }
        os.environ["DAGSTER_PG_URL"] = self.daemon_env["DAGSTER_PG_URL"]
        self.instance = DagsterInstance.from_config(str(self.home))
        self.sessions = SessionCounter(stack, {"dagster": dagster_db, "app": name})
        self.process: subprocess.Popen | None = None
        self.sampler: ProcessSampler | None = None

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.process is not None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                pass
            self._signal_group(signal.SIGKILL)
            self.process.wait()
            self.sampler.stop()
        self.sessions.close()
        self.instance.dispose()
        self.stack.drop_objects()

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def start(self) -> float:
        """Start the daemon (its own process group); returns when it was started."""
        log = (self.home / "daemon.log").open("wb")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
            env=self.daemon_env, cwd=self.home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        self.sampler = ProcessSampler(
            {"daemon + code server": self.process.pid, "PostgreSQL": self.stack.server.get_pid()})
        self.sampler.start()
        return time.time()

    def wait_until_sensing(self, timeout: float = 180) -> None:
        """Until `uploads_sensor` has finished a tick: the code server is up and an upload put
        now waits at most one sensor interval."""
        self._until(lambda: self.sensor_ticks(limit=1), timeout, "the uploads sensor to tick")

    def sensor_ticks(self, limit: int | None = None) -> list:
        """`uploads_sensor`'s ticks, newest first."""
        return [tick for state in self.instance.all_instigator_state() if state.instigator_name == "uploads_sensor"
                for tick in self.instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=limit)]

    def put(self, images: Sequence[bytes]) -> tuple[float, list[str]]:
        """Put each image under a new key from 8 threads; returns the time just before the
        first put (bursts are timed from there) and the keys."""
        keys = [f"uploads/u{uuid.uuid4().hex[:12]}/{i}.jpg" for i in range(len(images))]
        with ThreadPoolExecutor(max_workers=8) as pool:
            started = time.time()
            list(pool.map(lambda key, data: self.stack.s3.put_object(Bucket=self.env["MINIO_BUCKET"], Key=key,
                                                                     Body=data), keys, images))
        return started, keys

    def wait_renders(self, expected: int, timeout: float = 1800) -> float:
        """Until ``expected`` render rows are completed or failed; returns the last one's time."""
        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
            def finished():
                done, last = conn.execute("SELECT count(*), extract(epoch FROM max(updated_at)) FROM renders "
                                          "WHERE status IN ('completed', 'failed')").fetchone()
                return float(last) if done >= expected else None
            return self._until(finished, timeout, f"{expected} renders")

    def first_completed(self, key: str, timeout: float = 300) -> float:
        """Until a render of the upload at ``key`` is completed; returns its completion time."""
        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
            def completed():
                at = conn.execute("SELECT extract(epoch FROM min(completed_at)) FROM renders "
                                  "WHERE asset_id = %s AND status = 'completed'", (asset_id_for(key),)).fetchone()[0]
                return float(at) if at is not None else None
            return self._until(completed, timeout, f"a completed render of {key}", poll=0.1)

    def wait_runs_created(self, count: int, timeout: float = 300) -> None:
        self._until(lambda: len(self.instance.get_runs()) >= count, timeout, f"{count} run(s) to be created")

    def wait_runs_finished(self, count: int, timeout: float = 600) -> None:
        """Until at least ``count`` runs exist and every run has ended (success, failure or canceled)."""
        def finished():
            runs = self.instance.get_runs()
            return len(runs) >= count and all(run.is_finished for run in runs)
        self._until(finished, timeout, f"{count} run(s) to end")

    def _until(self, check, timeout: float, what: str, poll: float = 0.5):
        deadline = time.monotonic() + timeout
        while (result := check()) in (None, False):
            if time.monotonic() > deadline:
                tail = (self.home / "daemon.log").read_text(errors="replace").splitlines()[-30:]
                raise TimeoutError(f"waited {timeout:.0f} s for {what}; daemon log ends:\n" + "\n".join(tail))
            time.sleep(poll)
        return result

    def runs(self) -> list[RunFacts]:
        """Every run so far, oldest first, with its events, step times, engine time and peak RSS."""
        engine = self._engine_seconds_by_run()
        facts = []
        for record in sorted(self.instance.get_run_records(), key=lambda r: r.create_timestamp.timestamp()):
            run = record.dagster_run
            events, launched, worker_up, pid = self._events(run.run_id)
            steps: dict[str, float] = {}
            for stat in self.instance.get_run_step_stats(run.run_id):
                if stat.start_time and stat.end_time:
                    stage = stat.step_key.rsplit("_", 1)[-1]  # uploads, or the style op's stage
                    steps[stage] = steps.get(stage, 0.0) + stat.end_time - stat.start_time
            peak = self.sampler.peak_kib.get(pid) if pid is not None and self.sampler else None
            facts.append(RunFacts(
                run_id=run.run_id, job=run.job_name, status=run.status.value,
                uploads=int(run.tags.get("render_pipeline/uploads", 0)),
                created=record.create_timestamp.timestamp(), launched=launched, worker_up=worker_up,
                started=record.start_time, ended=record.end_time, events=events, pid=pid,
                peak_mib=peak / 1024 if peak else None, engine_s=engine.get(run.run_id, 0.0), steps_s=steps,
            ))
        return facts

    def _events(self, run_id: str) -> tuple[int, float | None, float | None, int | None]:
        """The run's event count, when the daemon launched it, and when its worker was up and
        with which pid (the worker's "Started process for run (pid: N)" engine event)."""
        count, launched, worker_up, pid, cursor = 0, None, None, None, None
        while True:
            page = self.instance.get_records_for_run(run_id, cursor=cursor, limit=1000)
            for record in page.records:
                count += 1
                event = record.event_log_entry.dagster_event
                if event is None:
                    continue
                if event.event_type == DagsterEventType.RUN_STARTING and launched is None:
                    launched = record.timestamp
                elif event.event_type == DagsterEventType.ENGINE_EVENT and pid is None:
                    match = WORKER_STARTED.search(event.message or "")
                    if match:
                        pid, worker_up = int(match.group(1)), record.timestamp
            if not page.has_more:
                return count, launched, worker_up, pid
            cursor = page.cursor

    def _engine_seconds_by_run(self) -> dict[str, float]:
        """Each run's engine time: the stage timings (not `upload`) its completed rows record."""
        totals: dict[str, float] = {}
        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
            rows = conn.execute("SELECT dagster_run_id, size_preset_id, render_metadata->'timings_ms' FROM renders "
                                "WHERE status = 'completed'").fetchall()
        for run_id, preset, timings in rows:
            stages = [s for s in imaging.STAGES if s != "decode" or preset in self.decoding_presets]
            totals[run_id] = totals.get(run_id, 0.0) + sum(timings.get(s, 0.0) for s in stages) / 1000
        return totals


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
    args = parser.parse_args()
    quick = args.quick
    workdir = Path(tempfile.mkdtemp(prefix="render-bench-"))
    stack = Stack(workdir)
    try:
        if "a" in args.parts:
            part_a(stack, repeats=3 if quick else 7)
        if "b" in args.parts:
            burst(stack, "b", "bench_b", uploads=20 if quick else 1000, size=SMALL, presets=("square-1024",),
                  target=0.50)
        if "c" in args.parts:
            part_c(stack, [1000] if quick else [1000, 10000, 100000])
        if "d" in args.parts:
            burst(stack, "d", "bench_d", uploads=4 if quick else 64, size=PHOTO, presets=imaging.DEFAULT_PRESET_IDS,
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
