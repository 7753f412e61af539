"""The live stack the Dagster benchmark drives: embedded PostgreSQL and moto's S3 server
(`Stack`), a real `dagster-daemon` on them (`Daemon`), what each run cost (`RunFacts`), and the
process and session probes behind those figures.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import psycopg
from dagster import DagsterEventType, DagsterInstance

from render_pipeline import imaging
from render_pipeline.commands.up import DAGSTER_RUN_ENV
from render_pipeline.keys import asset_id_for
from render_pipeline.resources.embedded_postgres import (
    dagster_storage_url,
    embedded_server,
    ensure_database,
    stop_embedded_server,
)
from render_pipeline.store import migrations

ROOT = Path(__file__).resolve().parents[1]
ACCESS, SECRET = "bench-access", "bench-secret"
WORKER_STARTED = re.compile(r"Started process for run \(pid: (\d+)\)")  # the run worker's first event
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
