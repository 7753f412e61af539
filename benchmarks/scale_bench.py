"""The runbook and maintenance queries, and Dagster's dynamic partitions, at a million uploads.

    .venv/bin/python -m benchmarks.scale_bench                      # 1 000 000 uploads, 12 000 000 renders
    .venv/bin/python -m benchmarks.scale_bench --uploads 100000     # a tenth, in a few minutes
    .venv/bin/python -m benchmarks.scale_bench --home /tmp/scale --keep   # keep the data for a rerun

(a) the data: `benchmarks/scale_data.py` generates the uploads and their 12 renders each inside
    the embedded PostgreSQL, then applies the later migrations (their index builds timed); a
    kept --home is reused and only pending migrations are applied.
(b) every query an operator or a maintenance job runs against `renders` and `assets`, called
    through the production function in `render_pipeline.store` with the parameters the
    command or job passes: median/min/max wall time over --runs calls (each in a transaction
    rolled back, so row locks and updates change nothing), then EXPLAIN (ANALYZE, BUFFERS) of
    the statements that call executed, for its indexes and buffers.  Target: 100 ms.
(c) Dagster's dynamic partitions on PostgreSQL storage: `add_dynamic_partitions` in batches of
    the sensor's size, `has_dynamic_partition`, `get_dynamic_partitions`, and the asset's
    partitions through GraphQL (dagster_graphql in process) — --partitions of them.

Prints a table per part; nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from benchmarks import scale_data
from benchmarks.scale_queries import CATALOGUE, ProductionQuery
from render_pipeline.resources.embedded_postgres import ensure_database, embedded_server, stop_embedded_server
from render_pipeline.store import migrations

TARGET_MS = 100.0
DATABASE = "scale_bench"


class RecordingConnection:
    """The real connection, noting each statement a production function executes."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn
        self.statements: list[tuple[str, object]] = []

    def execute(self, query, params=None, **kwargs):
        self.statements.append((query, params))
        return self._conn.execute(query, params, **kwargs)

    def cursor(self, *args, **kwargs):
        return self._conn.cursor(*args, **kwargs)


@dataclass
class Measured:
    name: str
    samples_ms: list[float]
    rows: int
    plans: list[dict]

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms)


def measure(conn: psycopg.Connection, query: ProductionQuery, runs: int) -> Measured:
    """Time the production call ``runs`` times, then explain what it executed."""
    samples, rows = [], 0
    for _ in range(runs):
        with _rolled_back(conn):
            started = time.perf_counter()
            result = query.call(conn)
            samples.append((time.perf_counter() - started) * 1000)
        rows = result if isinstance(result, int) else len(result)
    recorder = RecordingConnection(conn)
    with _rolled_back(conn):
        query.call(recorder)
    plans = []
    for statement, params in recorder.statements:
        with _rolled_back(conn):
            explain = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ") + sql.SQL(statement)
            plans.append(conn.execute(explain, params).fetchone()["QUERY PLAN"][0])
    return Measured(query.name, samples, rows, plans)


class _rolled_back:
    """A transaction that is always rolled back."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def __enter__(self):
        self.transaction = self.conn.transaction(force_rollback=True)
        return self.transaction.__enter__()

    def __exit__(self, *exc):
        return self.transaction.__exit__(*exc)


def plan_nodes(node: dict) -> Iterator[dict]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def plan_summary(plan: dict) -> tuple[str, float, int, int]:
    """(access paths, execution ms, shared buffers hit, read) of one EXPLAIN ANALYZE."""
    paths = []
    for node in plan_nodes(plan["Plan"]):
        if "Index Name" in node:
            paths.append(node["Index Name"] + (" (index only)" if node["Node Type"] == "Index Only Scan" else ""))
        elif node["Node Type"] == "Seq Scan":
            paths.append(f"SEQ SCAN {node['Relation Name']}")
    top = plan["Plan"]
    return (", ".join(dict.fromkeys(paths)) or "-", plan["Execution Time"],
            top.get("Shared Hit Blocks", 0), top.get("Shared Read Blocks", 0))


def print_queries(results: list[Measured]) -> None:
    print(f"\n(b) queries (target {TARGET_MS:.0f} ms; wall time of the production call, ms)")
    print(f"{'query':<58} {'median':>8} {'min':>8} {'max':>8} {'× target':>9} {'rows':>6}  plan: indexes; "
          "exec ms; buffers hit/read")
    for result in results:
        ratio = result.median / TARGET_MS
        flag = "" if ratio <= 1 else "  OVER"
        print(f"{result.name:<58} {result.median:8.1f} {min(result.samples_ms):8.1f} {max(result.samples_ms):8.1f} "
              f"{ratio:9.2f} {result.rows:6d}{flag}")
        for plan in result.plans:
            paths, exec_ms, hit, read = plan_summary(plan)
            print(f"{'':<60}{paths}; {exec_ms:.1f} ms; {hit}/{read}")


def prepare(home: Path, uploads: int) -> str:
    """The benchmark database with ``uploads`` uploads loaded and every migration applied."""
    server = embedded_server(home / "pg")
    ensure_database(server.get_uri(), DATABASE)
    url = server.get_uri(DATABASE)
    with psycopg.connect(url, autocommit=True) as conn:
        loaded = scale_data.uploads_loaded(conn)
    if loaded not in (None, uploads):
        raise SystemExit(f"{home} holds {loaded} uploads, not {uploads}: use another --home")
    print("(a) data")
    if loaded is None:
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            # Checkpoints every 1 GB of WAL (the default) would write every loaded page twice.
            conn.execute("ALTER SYSTEM SET max_wal_size = '16GB'")
            conn.execute("ALTER SYSTEM SET checkpoint_timeout = '30min'")
            conn.execute("SELECT pg_reload_conf()")
        timings = scale_data.generate(url, uploads)
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET maintenance_work_mem = '1GB'")
            started = time.perf_counter()
            applied = migrations.upgrade(conn)
            timings = {f"pending migrations ({', '.join(m.path.name for m in applied) or 'none'})":
                       time.perf_counter() - started}
            if applied:
                conn.execute("ANALYZE renders")
    for phase, seconds in timings.items():
        print(f"  {phase}: {seconds:.1f} s")
    with psycopg.connect(url) as conn:
        for table, rows, heap, indexes in scale_data.table_sizes(conn):
            print(f"  {table}: {rows:,} rows, table {heap}, indexes {indexes}")
    return url


def run_queries(url: str, runs: int, only: Callable[[str], bool]) -> list[Measured]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return [measure(conn, query, runs) for query in CATALOGUE(conn) if only(query.name)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, help="dynamic partitions for part c (default: --uploads)")
    parser.add_argument("--runs", type=int, default=7, help="timed calls per query (default 7)")
    parser.add_argument("--home", type=Path, help="data directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep --home (server stopped) for a rerun")
    parser.add_argument("--skip-dagster", action="store_true", help="only parts a and b")
    parser.add_argument("--only", default="", help="only queries whose name contains this")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="scale_bench_"))
    try:
        url = prepare(home, args.uploads)
        print_queries(run_queries(url, args.runs, lambda name: args.only in name))
        if not args.skip_dagster:
            from benchmarks.scale_partitions import bench_partitions

            bench_partitions(embedded_server(home / "pg").get_uri(), args.partitions or args.uploads, args.runs)
    finally:
        stop_embedded_server(home / "pg")
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
