"""Queries on `renders`: the lifecycle queued → started → completed | failed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class RenderTarget:
    """One (upload, style, preset) render and where its objects go."""

    render_id: uuid.UUID
    asset_id: uuid.UUID
    style_id: str
    preset_id: str


@dataclass(frozen=True)
class CompletedRender:
    target: RenderTarget
    output_key: str
    preview_key: str
    output_sha256: str
    output_bytes: int
    width: int
    height: int
    style_version: int
    algorithm_config: dict
    render_metadata: dict


def queue(conn: psycopg.Connection, targets: Sequence[RenderTarget], *, run_id: str) -> None:
    """Insert `queued` rows for requested renders; rows already in flight are left alone.

    The queuing run is noted in ``metadata.queued_by_run``: if that run dies before its render
    step starts a row, the failure sensor finds the row by it (``dagster_run_id`` is left as is,
    it names the run that last *started* the render and drives the attempt count).
    """
    if not targets:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO renders (id, asset_id, style_id, size_preset_id, status, metadata)
            VALUES (%s, %s, %s, %s, 'queued', jsonb_build_object('queued_by_run', %s::text))
            ON CONFLICT (id) DO UPDATE SET status = 'queued', error_message = NULL, updated_at = now(),
                metadata = renders.metadata || EXCLUDED.metadata
            WHERE renders.status <> 'started'
            """,
            [(t.render_id, t.asset_id, t.style_id, t.preset_id, run_id) for t in targets],
        )


def start(conn: psycopg.Connection, targets: Sequence[RenderTarget], *, run_id: str) -> None:
    """Mark renders `started` by this run (a retry or a second run takes the row over)."""
    if not targets:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO renders (id, asset_id, style_id, size_preset_id, status, started_at, dagster_run_id, attempt)
            VALUES (%s, %s, %s, %s, 'started', now(), %s, 1)
            ON CONFLICT (id) DO UPDATE SET
                status = 'started', started_at = now(), completed_at = NULL, error_message = NULL,
                dagster_run_id = EXCLUDED.dagster_run_id, updated_at = now(),
                attempt = GREATEST(renders.attempt, 1)
                          + CASE WHEN renders.dagster_run_id <> EXCLUDED.dagster_run_id THEN 1 ELSE 0 END
            """,
            [(t.render_id, t.asset_id, t.style_id, t.preset_id, run_id) for t in targets],
        )


def complete(conn: psycopg.Connection, render: CompletedRender) -> None:
    conn.execute(
        """
        UPDATE renders SET
            status = 'completed', completed_at = now(), updated_at = now(), error_message = NULL,
            output_minio_key = %s, preview_minio_key = %s, output_sha256 = %s, output_bytes = %s,
            width = %s, height = %s, style_version = %s, algorithm_config_snapshot = %s,
            render_metadata = %s, archived_at = NULL
        WHERE id = %s
        """,
        (
            render.output_key, render.preview_key, render.output_sha256, render.output_bytes, render.width,
            render.height, render.style_version, Jsonb(render.algorithm_config), Jsonb(render.render_metadata),
            render.target.render_id,
        ),
    )


def fail(conn: psycopg.Connection, render_ids: Sequence[uuid.UUID], message: str) -> None:
    conn.execute(
        """
        UPDATE renders SET status = 'failed', error_message = %s, updated_at = now()
        WHERE id = ANY(%s) AND status IN ('queued', 'started')
        """,
        (message, list(render_ids)),
    )


def fail_unfinished_for_run(conn: psycopg.Connection, run_id: str, message: str) -> int:
    """A run ended badly: every render it had started and not finished is `failed`, and so is
    every render it queued and never started (a batch whose run died before reaching it)."""
    cursor = conn.execute(
        """
        UPDATE renders SET status = 'failed', error_message = %s, updated_at = now()
        WHERE (status = 'started' AND dagster_run_id = %s)
           OR (status = 'queued' AND metadata ->> 'queued_by_run' = %s)
        """,
        (message, run_id, run_id),
    )
    return cursor.rowcount


def rows_for(conn: psycopg.Connection, asset_ids: Sequence[uuid.UUID], style_id: str) -> list[dict]:
    return conn.execute(
        """
        SELECT r.id, r.asset_id, r.size_preset_id, r.status, r.error_message, r.output_minio_key,
               r.preview_minio_key, r.width, r.height, p.width AS preset_width, p.height AS preset_height
        FROM renders r JOIN size_presets p ON p.id = r.size_preset_id
        WHERE r.asset_id = ANY(%s) AND r.style_id = %s
        """,
        (list(asset_ids), style_id),
    ).fetchall()


def renders_of(conn: psycopg.Connection, asset_ids: Sequence[uuid.UUID]) -> list[dict]:
    """Every render of these uploads, in a stable order."""
    return conn.execute(
        """
        SELECT asset_id, style_id, size_preset_id, status, error_message, output_minio_key
        FROM renders WHERE asset_id = ANY(%s) ORDER BY asset_id, style_id, size_preset_id
        """,
        (list(asset_ids),),
    ).fetchall()


def requeued(conn: psycopg.Connection, *, limit: int) -> list[dict]:
    """Renders an operator requeued that no run has picked up yet, oldest first."""
    return conn.execute(
        """
        SELECT r.id, r.attempt, r.style_id, r.size_preset_id, a.partition_key
        FROM renders r JOIN assets a ON a.id = r.asset_id
        WHERE r.status = 'queued' AND r.dagster_run_id IS NULL AND r.metadata ? 'requeued_at'
          AND a.partition_key IS NOT NULL
        ORDER BY r.updated_at
        LIMIT %s
        """,
        (limit,),
    ).fetchall()
