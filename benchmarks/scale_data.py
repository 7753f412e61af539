"""Bulk data for the scale benchmark: N uploads and 12 renders each, generated inside PostgreSQL.

The history spans HISTORY_DAYS, oldest first (rows land in the heap in time order, as an
append-only table's do), shaped like the steady state the maintenance jobs keep:

- older than ARCHIVE_AFTER_DAYS: renders `archived` (retention ran), failures flagged archived;
- between RETENTION_DAYS and ARCHIVE_AFTER_DAYS: `completed` past retention, the day's backlog
  the next retention run selects;
- FAILED_SHARE of renders `failed`, with a handful of recurring messages and some carrying a
  run id; failures older than FAILED_ARCHIVE_DAYS flagged archived;
- the last IN_FLIGHT_MINUTES: renders `queued` or `started` (runs in flight);
- a few renders stuck `started` for hours, `queued` with a lost run request, and requeued.

Ids are md5-derived UUIDs: random in key order, like the application's UUIDv5 ids.  The load
runs on LOADERS connections with foreign-key triggers off (the rows are consistent by
construction) and the two unique indexes of `renders` built after it, under their own names;
the indexes of migrations after 001 are then built as a production upgrade would build them.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
from psycopg import sql

from render_pipeline.store import migrations

HISTORY_DAYS = 180
RETENTION_DAYS = 90
ARCHIVE_AFTER_DAYS = 91
FAILED_ARCHIVE_DAYS = 7
FAILED_SHARE = 0.02
IN_FLIGHT_MINUTES = 15
BATCH_UPLOADS = 25_000
STYLES_PER_UPLOAD = 4
RENDERS_PER_UPLOAD = 12  # 4 styles × the 3 default presets
LOADERS = 2  # one per core
# The unique indexes of `renders` (migration 001), rebuilt after the load.
RENDERS_UNIQUE = {
    "renders_pkey": "PRIMARY KEY (id)",
    "renders_asset_id_style_id_size_preset_id_key": "UNIQUE (asset_id, style_id, size_preset_id)",
}

_ASSETS = """
INSERT INTO assets (id, partition_key, object_key, filename, etag, byte_size, sha256, format, width, height,
                    status, error_code, error_message, metadata, dagster_run_id, created_at, updated_at,
                    requested_at, validated_at)
SELECT md5('asset/' || n)::uuid, key, 'uploads/' || key, 'photo-' || n || '.jpg', md5('etag/' || n),
       2000000 + n %% 3000000, encode(sha256(n::text::bytea), 'hex'), 'JPEG', 4000, 3000,
       CASE WHEN n %% 100 = 0 THEN 'invalid' ELSE 'valid' END,
       CASE WHEN n %% 100 = 0 THEN 'not_an_image' END,
       CASE WHEN n %% 100 = 0 THEN 'cannot identify image file' END,
       '{"exif_orientation": 1}'::jsonb, md5('run/' || n / 64)::uuid::text, t, t + interval '4 seconds',
       t, t + interval '4 seconds'
FROM (SELECT n, md5('asset/' || n)::uuid || '/photo-' || n || '.jpg' AS key,
             now() - make_interval(days => %(days)s) * (1 - n::float8 / %(total)s) AS t
      FROM generate_series(%(lo)s::int, %(hi)s::int) AS n) u
"""

# One row per (upload n, style, default preset); r is a per-render uniform in [0, 1) taken from
# the last digits of the id's hash (the first ones order the ids: status must not follow id order).  Per-upload values are computed once per upload, not once per render.
_RENDERS = """
INSERT INTO renders (id, asset_id, style_id, size_preset_id, status, error_message, attempt, dagster_run_id,
                     style_version, created_at, updated_at, started_at, completed_at, archived_at,
                     output_minio_key, preview_minio_key, output_sha256, output_bytes, width, height, metadata,
                     render_metadata, algorithm_config_snapshot)
SELECT id, asset_id, style_id, preset_id, status,
       CASE WHEN status = 'failed' THEN (ARRAY[
           'S3 PutObject timed out after 3 attempts (ReadTimeoutError)',
           'MemoryError: render exceeded the worker memory limit',
           'decode failed: image file is truncated',
           'output missing: the render''s objects are not in the object store (orphan reconciliation)',
           'database unavailable: connection refused',
           'stale: started more than 1:00:00 ago and its Dagster run (' || run_id || ') does not exist',
           'Dagster run ' || run_id || ' ended FAILURE without finishing this render'
       ])[1 + (r * 1e6)::int %% 7] END,
       1, run_id, 3, t, t + CASE WHEN done THEN interval '40 seconds'
                                 WHEN status = 'failed' THEN interval '25 seconds' ELSE interval '0' END,
       CASE WHEN status <> 'queued' THEN t + interval '10 seconds' END,
       CASE WHEN done THEN t + interval '40 seconds' END,
       CASE WHEN status = 'archived' THEN t + make_interval(days => %(archive_after)s) END,
       CASE WHEN done THEN 'renders/' || id || '/output.png' END,
       CASE WHEN done THEN 'renders/' || id || '/preview.jpg' END,
       CASE WHEN done THEN hex || hex END,
       CASE WHEN done THEN 90000 + (r * 60000)::int END,
       CASE WHEN done THEN width END,
       CASE WHEN done THEN height END,
       CASE WHEN status = 'failed' AND age > make_interval(days => %(failed_archive)s) THEN archived_meta ELSE meta END,
       CASE WHEN done THEN render_meta ELSE '{}'::jsonb END,
       CASE WHEN done THEN config END
FROM (
    SELECT h.id, h.hex, h.r, u.asset_id, u.run_id, u.t, u.age, u.meta, u.archived_meta, u.render_meta,
           c.style_id, c.preset_id, c.width, c.height, c.config, k.status, k.status IN ('completed', 'archived') AS done
    FROM (SELECT n, t, age, md5('asset/' || n)::uuid AS asset_id, run_id,
                 jsonb_build_object('queued_by_run', run_id) AS meta,
                 jsonb_build_object('queued_by_run', run_id, 'archived', true,
                                    'archived_at', t + make_interval(days => %(failed_archive)s)) AS archived_meta,
                 jsonb_build_object('duration_ms', 150 + n %% 400, 'decode_ms', 36, 'quantize_ms', 70,
                                    'encode_ms', 14, 'draft_scale', 1) AS render_meta
          FROM (SELECT n, md5('run/' || n / 64)::uuid::text AS run_id,
                       now() - make_interval(days => %(days)s) * (1 - n::float8 / %(total)s) AS t,
                       make_interval(days => %(days)s) * (1 - n::float8 / %(total)s) AS age
                FROM generate_series(%(lo)s::int, %(hi)s::int) AS n) t
          OFFSET 0) u  -- OFFSET 0 keeps each derived value computed once, not inlined per use
    CROSS JOIN (SELECT s.id AS style_id, p.id AS preset_id, p.width, p.height, s.algorithm_config AS config
                FROM styles s CROSS JOIN size_presets p WHERE p.is_default) c
    CROSS JOIN LATERAL (SELECT md5('render/' || u.n || '/' || c.style_id || '/' || c.preset_id) AS hex OFFSET 0) m
    CROSS JOIN LATERAL (SELECT m.hex, m.hex::uuid AS id,
                               ('x' || substr(m.hex, 26, 7))::bit(28)::int / 268435456.0 AS r OFFSET 0) h
    CROSS JOIN LATERAL (SELECT
           CASE WHEN u.age < make_interval(mins => %(in_flight)s) THEN (CASE WHEN h.r < 0.5 THEN 'queued' ELSE 'started' END)
                WHEN h.r < %(failed)s THEN 'failed'
                WHEN h.r < %(failed)s + 0.005 AND u.age BETWEEN interval '2 hours' AND interval '3 hours' THEN 'started'
                WHEN h.r < %(failed)s + 0.005 AND u.age BETWEEN interval '7 hours' AND interval '8 hours' THEN 'queued'
                WHEN u.age > make_interval(days => %(archive_after)s) THEN 'archived'
                ELSE 'completed' END AS status OFFSET 0) k
    OFFSET 0
) g
"""

# A few failed renders of the last day requeued by an operator and not picked up yet.
_REQUEUED = """
UPDATE renders SET status = 'queued', attempt = attempt + 1, error_message = NULL, dagster_run_id = NULL,
    updated_at = now() - interval '1 minute',
    metadata = metadata || jsonb_build_object('requeued_at', now(), 'requeue_reason', 'operator requeue')
WHERE id IN (SELECT id FROM renders WHERE status = 'failed' AND updated_at > now() - interval '1 day'
             ORDER BY id LIMIT 200)
"""


def uploads_loaded(conn: psycopg.Connection) -> int | None:
    """The upload count of an earlier load (None when the database holds no benchmark data)."""
    present = conn.execute("SELECT to_regclass('scale_bench_load') IS NOT NULL").fetchone()[0]
    if not present:
        return None
    return conn.execute("SELECT uploads FROM scale_bench_load").fetchone()[0]


def generate(conninfo: str, uploads: int, log=print) -> dict[str, float]:
    """Load ``uploads`` uploads and their renders into an empty database; returns phase seconds."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        migrations.upgrade(conn, to=1)
        migrations.seed(conn)
        for name in RENDERS_UNIQUE:
            conn.execute(sql.SQL("ALTER TABLE renders DROP CONSTRAINT {}").format(sql.Identifier(name)))
    batches = [(lo, min(lo + BATCH_UPLOADS - 1, uploads)) for lo in range(1, uploads + 1, BATCH_UPLOADS)]
    with ThreadPoolExecutor(LOADERS) as pool:
        for lo, hi in pool.map(lambda batch: _load_batch(conninfo, uploads, *batch), batches):
            log(f"  loaded uploads {lo}–{hi} ({time.perf_counter() - started:.0f} s)")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        for name, definition in RENDERS_UNIQUE.items():
            conn.execute(sql.SQL("ALTER TABLE renders ADD CONSTRAINT {} {}").format(
                sql.Identifier(name), sql.SQL(definition)))
        conn.execute(_REQUEUED)
        timings["load"] = time.perf_counter() - started

        started = time.perf_counter()
        for migration in migrations.upgrade(conn):
            log(f"  migration {migration.version:03d}_{migration.name} applied")
        timings["later migrations (index builds)"] = time.perf_counter() - started

        started = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) assets")
        conn.execute("VACUUM (ANALYZE) renders")
        timings["vacuum analyze"] = time.perf_counter() - started
        conn.execute("CREATE TABLE scale_bench_load (uploads integer NOT NULL)")
        conn.execute("INSERT INTO scale_bench_load VALUES (%s)", (uploads,))
    return timings


def _load_batch(conninfo: str, uploads: int, lo: int, hi: int) -> tuple[int, int]:
    params = {"days": HISTORY_DAYS, "total": uploads, "archive_after": ARCHIVE_AFTER_DAYS,
              "failed_archive": FAILED_ARCHIVE_DAYS, "failed": FAILED_SHARE, "in_flight": IN_FLIGHT_MINUTES,
              "lo": lo, "hi": hi}
    with psycopg.connect(conninfo) as conn:
        conn.execute("SET session_replication_role = replica")  # no FK triggers during the load
        conn.execute("SET synchronous_commit = off")
        conn.execute(_ASSETS, params)
        conn.execute(_RENDERS, params)
    return lo, hi


def table_sizes(conn: psycopg.Connection) -> list[tuple[str, int, str, str]]:
    """(table, rows, heap size, index size) of the app's two big tables."""
    rows = conn.execute(
        """
        SELECT c.relname, c.reltuples::bigint, pg_size_pretty(pg_table_size(c.oid)),
               pg_size_pretty(pg_indexes_size(c.oid))
        FROM pg_class c WHERE c.relname IN ('assets', 'renders') ORDER BY c.relname
        """
    ).fetchall()
    return [tuple(row) for row in rows]
