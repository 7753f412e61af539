"""Queries for the maintenance jobs and operator commands: one function per query.

Batches are selected with keyset pagination (``id > after``) so a job never holds an
unbounded transaction and can resume anywhere; row locks (``FOR UPDATE SKIP LOCKED``) keep a
concurrent re-render from being archived under its feet.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psycopg

FIRST_ID = uuid.UUID(int=0)  # keyset start: sorts before every render id
FIRST_COMPLETED = (datetime(1970, 1, 1, tzinfo=UTC), FIRST_ID)  # keyset start of lock_expired_completed
# Failed renders flagged archived by retention carry this metadata key (their status stays
# `failed`, so the failure stays visible in history; requeue skips them by default).
ARCHIVED_FLAG = "archived"


# ---- retention -------------------------------------------------------------------------------

def lock_expired_completed(
    conn: psycopg.Connection, *, older_than: timedelta, after: tuple[datetime, uuid.UUID], limit: int
) -> list[dict]:
    """The next batch of completed renders older than ``older_than`` after the keyset position
    ``after`` (completed_at, id), in that order, locked until commit.

    The keyset follows the index (`renders_completed_keyset_idx`), so each batch reads only its
    own rows however many renders have expired; an id-ordered batch reads every expired row.
    """
    return conn.execute(
        """
        SELECT id, completed_at, output_minio_key, preview_minio_key FROM renders
        WHERE status = 'completed' AND completed_at < now() - %s AND (completed_at, id) > (%s, %s)
        ORDER BY completed_at, id LIMIT %s
        FOR UPDATE SKIP LOCKED
        """,
        (older_than, *after, limit),
    ).fetchall()


def archive_completed(conn: psycopg.Connection, render_ids: Sequence[uuid.UUID]) -> int:
    """Mark renders whose objects were deleted `archived`."""
    return conn.execute(
        """
        UPDATE renders SET status = 'archived', archived_at = now(), updated_at = now()
        WHERE id = ANY(%s) AND status = 'completed'
        """,
        (list(render_ids),),
    ).rowcount


def count_old_failed(conn: psycopg.Connection, *, older_than: timedelta) -> int:
    row = conn.execute(
        """
        SELECT count(*) AS n FROM renders
        WHERE status = 'failed' AND updated_at < now() - %s AND NOT metadata ? %s
        """,
        (older_than, ARCHIVED_FLAG),
    ).fetchone()
    return row["n"]


def flag_old_failed_archived(conn: psycopg.Connection, *, older_than: timedelta, limit: int) -> int:
    """Flag up to ``limit`` failed renders (failed more than ``older_than`` ago) archived."""
    return conn.execute(
        """
        UPDATE renders
        SET metadata = metadata || jsonb_build_object(%s::text, true, 'archived_at', now())
        WHERE id IN (
            SELECT id FROM renders
            WHERE status = 'failed' AND updated_at < now() - %s AND NOT metadata ? %s
            ORDER BY updated_at  -- oldest first, along renders_failed_live_idx
            LIMIT %s FOR UPDATE SKIP LOCKED
        )
        """,
        (ARCHIVED_FLAG, older_than, ARCHIVED_FLAG, limit),
    ).rowcount


# ---- orphan reconciliation -------------------------------------------------------------------

def render_statuses(conn: psycopg.Connection, render_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = conn.execute("SELECT id, status FROM renders WHERE id = ANY(%s)", (list(render_ids),)).fetchall()
    return {row["id"]: row["status"] for row in rows}


def lock_renders(conn: psycopg.Connection, render_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Current status of these renders, row-locked until commit (a re-render waits for us)."""
    rows = conn.execute(
        "SELECT id, status FROM renders WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (list(render_ids),)
    ).fetchall()
    return {row["id"]: row["status"] for row in rows}


def completed_in_id_range(
    conn: psycopg.Connection, *, after_id: uuid.UUID, upto_id: uuid.UUID | None, completed_before: datetime,
    limit: int,
) -> list[dict]:
    """Completed renders with ``after_id < id < upto_id`` (None: no upper bound), completed
    before ``completed_before``, in id order — the rows a stretch of the listing must cover."""
    return conn.execute(
        """
        SELECT id, output_minio_key, preview_minio_key FROM renders
        WHERE status = 'completed' AND id > %s AND (%s::uuid IS NULL OR id < %s) AND completed_at < %s
        ORDER BY id LIMIT %s
        """,
        (after_id, upto_id, upto_id, completed_before, limit),
    ).fetchall()


def fail_missing_output(
    conn: psycopg.Connection, render_ids: Sequence[uuid.UUID], *, completed_before: datetime, message: str
) -> int:
    """Completed renders whose objects are gone → `failed`, flagged for re-render."""
    return conn.execute(
        """
        UPDATE renders SET status = 'failed', error_message = %s, updated_at = now(),
            metadata = metadata || jsonb_build_object('output_missing_at', now())
        WHERE id = ANY(%s) AND status = 'completed' AND completed_at < %s
        """,
        (message, list(render_ids), completed_before),
    ).rowcount


def registered_object_keys(conn: psycopg.Connection, object_keys: Sequence[str]) -> set[str]:
    rows = conn.execute("SELECT object_key FROM assets WHERE object_key = ANY(%s)", (list(object_keys),)).fetchall()
    return {row["object_key"] for row in rows}


def register_uploads(conn: psycopg.Connection, uploads: Sequence[tuple[uuid.UUID, str, str]]) -> list[str]:
    """Insert `registered` rows for (asset_id, object_key, partition_key); returns the partition
    keys actually inserted (a row the sensor wrote meanwhile wins)."""
    inserted: list[str] = []
    with conn.cursor() as cur:
        for asset_id, object_key, partition_key in uploads:
            cur.execute(
                """
                INSERT INTO assets (id, partition_key, object_key, filename, status)
                VALUES (%s, %s, %s, %s, 'registered')
                ON CONFLICT DO NOTHING
                RETURNING partition_key
                """,
                (asset_id, partition_key, object_key, partition_key.rsplit("/", 1)[-1]),
            )
            row = cur.fetchone()
            if row is not None:
                inserted.append(row["partition_key"])
    return inserted


# ---- stale-render reaper ---------------------------------------------------------------------

def stale_started(conn: psycopg.Connection, *, older_than: timedelta, after_id: uuid.UUID, limit: int) -> list[dict]:
    return conn.execute(
        """
        SELECT id, dagster_run_id, started_at FROM renders
        WHERE status = 'started' AND started_at < now() - %s AND id > %s
        ORDER BY id LIMIT %s
        """,
        (older_than, after_id, limit),
    ).fetchall()


def fail_stale_started(
    conn: psycopg.Connection, render_ids: Sequence[uuid.UUID], *, older_than: timedelta, message: str
) -> int:
    """`started` → `failed`, re-checking staleness so a row a new run took over is left alone."""
    return conn.execute(
        """
        UPDATE renders SET status = 'failed', error_message = %s, updated_at = now()
        WHERE id = ANY(%s) AND status = 'started' AND started_at < now() - %s
        """,
        (message, list(render_ids), older_than),
    ).rowcount


def stale_queued(conn: psycopg.Connection, *, older_than: timedelta, after_id: uuid.UUID, limit: int) -> list[dict]:
    """Renders queued (not picked up by any run) for longer than ``older_than``."""
    return conn.execute(
        """
        SELECT r.id, COALESCE((r.metadata ->> 'requeues')::int, 0) AS requeues, a.partition_key
        FROM renders r JOIN assets a ON a.id = r.asset_id
        WHERE r.status = 'queued' AND r.updated_at < now() - %s AND r.id > %s
        ORDER BY r.id LIMIT %s
        """,
        (older_than, after_id, limit),
    ).fetchall()


def fail_stale_queued(
    conn: psycopg.Connection, render_ids: Sequence[uuid.UUID], *, older_than: timedelta, message: str
) -> int:
    return conn.execute(
        """
        UPDATE renders SET status = 'failed', error_message = %s, updated_at = now()
        WHERE id = ANY(%s) AND status = 'queued' AND updated_at < now() - %s
        """,
        (message, list(render_ids), older_than),
    ).rowcount


# ---- requeue ---------------------------------------------------------------------------------

def select_failed(
    conn: psycopg.Connection,
    *,
    render_ids: Sequence[uuid.UUID] | None = None,
    error_ilike: str | None = None,
    error_regex: str | None = None,
    style_ids: Sequence[str] | None = None,
    failed_after: datetime | None = None,
    failed_before: datetime | None = None,
    include_archived: bool = False,
    limit: int,
) -> list[dict]:
    """Failed renders matching every given filter (None = no filter), oldest failure first.

    The time window is on `updated_at`, the time the render failed.
    """
    return conn.execute(
        """
        SELECT id, style_id, size_preset_id, attempt, updated_at AS failed_at, error_message
        FROM renders
        WHERE status = 'failed'
          AND (%(ids)s::uuid[] IS NULL OR id = ANY(%(ids)s::uuid[]))
          AND (%(ilike)s::text IS NULL OR error_message ILIKE %(ilike)s::text)
          AND (%(regex)s::text IS NULL OR error_message ~ %(regex)s::text)
          AND (%(styles)s::text[] IS NULL OR style_id = ANY(%(styles)s::text[]))
          AND (%(after)s::timestamptz IS NULL OR updated_at >= %(after)s::timestamptz)
          AND (%(before)s::timestamptz IS NULL OR updated_at < %(before)s::timestamptz)
          AND (%(archived)s OR NOT metadata ? %(flag)s)
        ORDER BY updated_at, id
        LIMIT %(limit)s
        """,
        {
            "ids": list(render_ids) if render_ids else None,
            "ilike": error_ilike,
            "regex": error_regex,
            "styles": list(style_ids) if style_ids else None,
            "after": failed_after,
            "before": failed_before,
            "archived": include_archived,
            "flag": ARCHIVED_FLAG,
            "limit": limit,
        },
    ).fetchall()


def failure_summary(
    conn: psycopg.Connection,
    *,
    failed_after: datetime,
    style_ids: Sequence[str] | None = None,
    include_archived: bool = False,
    limit: int,
) -> list[dict]:
    """Failed renders since ``failed_after`` counted per error message, most frequent first:
    what an operator reads before choosing a requeue pattern."""
    return conn.execute(
        """
        SELECT error_message, count(*) AS renders, min(updated_at) AS first_failed,
               max(updated_at) AS last_failed
        FROM renders
        WHERE status = 'failed' AND updated_at >= %(after)s
          AND (%(styles)s::text[] IS NULL OR style_id = ANY(%(styles)s::text[]))
          AND (%(archived)s OR NOT metadata ? %(flag)s)
        GROUP BY error_message
        ORDER BY renders DESC, error_message
        LIMIT %(limit)s
        """,
        {"after": failed_after, "styles": list(style_ids) if style_ids else None, "archived": include_archived,
         "flag": ARCHIVED_FLAG, "limit": limit},
    ).fetchall()


def requeue(conn: psycopg.Connection, render_ids: Sequence[uuid.UUID], *, reason: str,
            from_statuses: Sequence[str] = ("failed",)) -> list[uuid.UUID]:
    """Mark renders for the requeue sensor (the orchestration contract); returns the ids marked.

    ``attempt`` is left alone: it counts the runs that started the render, and grows when
    the requeued render starts.  ``metadata.requeues`` counts the requeues; dropping
    ``requeue_run`` makes the row claimable by the requeue sensor again."""
    rows = conn.execute(
        """
        UPDATE renders SET
            status = 'queued', error_message = NULL, dagster_run_id = NULL, updated_at = now(),
            metadata = (metadata - %s - 'requeue_run') || jsonb_build_object(
                'requeued_at', now(), 'requeue_reason', %s::text,
                'requeues', COALESCE((metadata ->> 'requeues')::int, 0) + 1)
        WHERE id = ANY(%s) AND status = ANY(%s)
        RETURNING id
        """,
        (ARCHIVED_FLAG, reason, list(render_ids), list(from_statuses)),
    ).fetchall()
    return [row["id"] for row in rows]


# ---- Dagster history retention ---------------------------------------------------------------

def run_ids_still_needed(conn: psycopg.Connection, run_ids: Sequence[str]) -> set[str]:
    """Of these Dagster run ids, those a live (not archived) render still points to."""
    rows = conn.execute(
        """
        SELECT DISTINCT dagster_run_id FROM renders
        WHERE dagster_run_id = ANY(%s) AND status <> 'archived'
          AND NOT (status = 'failed' AND metadata ? %s)
        """,
        (list(run_ids), ARCHIVED_FLAG),
    ).fetchall()
    return {row["dagster_run_id"] for row in rows}


# ---- metrics ---------------------------------------------------------------------------------

def render_counts(conn: psycopg.Connection) -> list[dict]:
    """Renders per (style, status); `completed` counts archived renders too (they completed)."""
    return conn.execute(
        """
        SELECT style_id,
               CASE WHEN status = 'archived' AND completed_at IS NOT NULL THEN 'completed'
                    WHEN status = 'archived' THEN 'failed' ELSE status END AS status,
               count(*) AS n
        FROM renders GROUP BY 1, 2
        """
    ).fetchall()


def duration_histogram(conn: psycopg.Connection, bounds: Sequence[float]) -> list[dict]:
    """Completed renders per (style, bucket) with their summed seconds, from
    `render_metadata.duration_ms`; ``bounds_at_or_above`` counts the ``bounds`` ≥ the duration
    (0 = above every bound), which places a duration exactly on a bound in that bound's bucket."""
    return conn.execute(
        """
        SELECT style_id, width_bucket(-seconds, %s::float8[]) AS bounds_at_or_above,
               count(*) AS n, sum(seconds) AS total
        FROM (
            SELECT style_id, (render_metadata->>'duration_ms')::float8 / 1000.0 AS seconds
            FROM renders
            WHERE completed_at IS NOT NULL AND render_metadata ? 'duration_ms'
        ) d
        GROUP BY 1, 2
        """,
        (sorted(-b for b in bounds),),
    ).fetchall()


def connections_active(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
    ).fetchone()
    return row["n"]
