"""Queries on `renders`: the lifecycle queued → started → completed | failed."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class RenderTarget:
    """One (upload, style, preset) render of one upload version (``source_sha256``) in one
    style version: a completed row of the same versions is finished work, never redone."""

    render_id: uuid.UUID
    asset_id: uuid.UUID
    style_id: str
    preset_id: str
    source_sha256: str | None = None
    style_version: int | None = None


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


_REQUEUE_CLAIM_LOCK_ID = 0x52515545  # arbitrary constant: "RQUE"

# A completed row is finished work unless the upload or the style changed since: only then
# may a queue or start statement take it over.
_STALE_OR_UNFINISHED = """
    renders.status <> 'completed'
    OR renders.style_version IS DISTINCT FROM EXCLUDED.style_version
    OR renders.render_metadata ->> 'source_sha256' IS DISTINCT FROM EXCLUDED.render_metadata ->> 'source_sha256'
"""
_TARGETS = """
    SELECT * FROM unnest(%(ids)s::uuid[], %(assets)s::uuid[], %(styles)s::text[], %(presets)s::text[],
                         %(versions)s::int[], %(shas)s::text[])
        AS t(id, asset_id, style_id, size_preset_id, style_version, source_sha256)
"""


def _columns(targets: Sequence[RenderTarget], run_id: str) -> dict:
    return {
        "ids": [t.render_id for t in targets], "assets": [t.asset_id for t in targets],
        "styles": [t.style_id for t in targets], "presets": [t.preset_id for t in targets],
        "versions": [t.style_version for t in targets], "shas": [t.source_sha256 for t in targets],
        "run_id": run_id,
    }


def queue(conn: psycopg.Connection, targets: Sequence[RenderTarget], *, run_id: str) -> None:
    """Insert `queued` rows for requested renders; rows in flight, and rows completed for the
    same upload and style versions, are left alone.

    The queuing run is noted in ``metadata.queued_by_run``: if that run dies before its render
    step starts a row, the failure sensor finds the row by it (``dagster_run_id`` is left as is,
    it names the run that last *started* the render and drives the attempt count).
    """
    if not targets:
        return
    conn.execute(
        """
        INSERT INTO renders AS renders (id, asset_id, style_id, size_preset_id, status, style_version,
                                        render_metadata, metadata)
        SELECT id, asset_id, style_id, size_preset_id, 'queued', style_version,
               jsonb_build_object('source_sha256', source_sha256), jsonb_build_object('queued_by_run', %(run_id)s::text)
        FROM (""" + _TARGETS + """) targets
        ON CONFLICT (id) DO UPDATE SET status = 'queued', error_message = NULL, updated_at = now(),
            metadata = renders.metadata || EXCLUDED.metadata
        WHERE renders.status <> 'started' AND (""" + _STALE_OR_UNFINISHED + ")",
        _columns(targets, run_id),
    )


def start(conn: psycopg.Connection, targets: Sequence[RenderTarget], *, run_id: str) -> set[uuid.UUID]:
    """Mark renders `started` by this run and return those it may render: a retry or a second
    run takes an unfinished row over, but a row completed for the same upload and style
    versions stays completed (a re-executed run skips it).  ``attempt`` counts the runs that
    started the render."""
    if not targets:
        return set()
    rows = conn.execute(
        """
        INSERT INTO renders AS renders (id, asset_id, style_id, size_preset_id, status, started_at, dagster_run_id,
                                        attempt, style_version, render_metadata)
        SELECT id, asset_id, style_id, size_preset_id, 'started', now(), %(run_id)s::text, 1, style_version,
               jsonb_build_object('source_sha256', source_sha256)
        FROM (""" + _TARGETS + """) targets
        ON CONFLICT (id) DO UPDATE SET
            status = 'started', started_at = now(), completed_at = NULL, error_message = NULL,
            dagster_run_id = EXCLUDED.dagster_run_id, updated_at = now(),
            attempt = renders.attempt
                      + CASE WHEN renders.dagster_run_id IS DISTINCT FROM EXCLUDED.dagster_run_id
                                  OR renders.status <> 'started' THEN 1 ELSE 0 END
        WHERE """ + _STALE_OR_UNFINISHED + """
        RETURNING id
        """,
        _columns(targets, run_id),
    ).fetchall()
    return {row["id"] for row in rows}


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


def fail_unfinished_for_run(
    conn: psycopg.Connection, run_id: str, *, step_reasons: Mapping[str, str], started: str, not_started: str,
    requeue_run: str | None = None,
) -> int:
    """A run ended badly: every render it had started and not finished is `failed`, and so is
    every render it queued (or that a requeue handed it) and never started.

    Each row gets its own reason: ``step_reasons[style]`` when its style's step failed (the
    step and that step's error), else ``started`` (the run ended under it) or ``not_started``.
    """
    cursor = conn.execute(
        """
        UPDATE renders SET status = 'failed', updated_at = now(),
            error_message = COALESCE((%(steps)s::jsonb) ->> style_id,
                                     CASE WHEN status = 'started' THEN %(started)s ELSE %(not_started)s END)
        WHERE (status = 'started' AND dagster_run_id = %(run)s)
           OR (status = 'queued' AND (metadata ->> 'queued_by_run' = %(run)s
                                      OR metadata ->> 'requeue_run' = %(requeue_run)s))
        """,
        {"steps": Jsonb(dict(step_reasons)), "started": started, "not_started": not_started,
         "run": run_id, "requeue_run": requeue_run},
    )
    return cursor.rowcount


def rows_for(conn: psycopg.Connection, asset_ids: Sequence[uuid.UUID], style_id: str) -> list[dict]:
    return conn.execute(
        """
        SELECT r.id, r.asset_id, r.size_preset_id, r.status, r.error_message, r.output_minio_key,
               r.preview_minio_key, r.width, r.height, p.width AS preset_width, p.height AS preset_height,
               r.style_version, r.render_metadata ->> 'source_sha256' AS source_sha256
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


def claim_requeued(conn: psycopg.Connection, claim: str, *, limit: int) -> list[dict]:
    """Claim up to ``limit`` renders an operator requeued that no run was requested for yet,
    oldest first, marking them with ``claim``; a claimed row is never claimed again (until it
    is requeued again).

    Claims take turns: with row locks alone, two racing evaluations split one upload's presets
    between them and request it in two runs. Rows locked by other writers are skipped."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_REQUEUE_CLAIM_LOCK_ID,))
    return conn.execute(
        """
        WITH picked AS (
            SELECT r.id FROM renders r JOIN assets a ON a.id = r.asset_id
            WHERE r.status = 'queued' AND r.dagster_run_id IS NULL AND r.metadata ? 'requeued_at'
              AND NOT r.metadata ? 'requeue_run' AND a.partition_key IS NOT NULL
            ORDER BY r.updated_at, r.id
            LIMIT %s
            FOR UPDATE OF r SKIP LOCKED
        )
        UPDATE renders r SET metadata = r.metadata || jsonb_build_object('requeue_run', %s::text)
        FROM picked, assets a
        WHERE r.id = picked.id AND a.id = r.asset_id
        RETURNING r.id, r.style_id, r.size_preset_id, a.partition_key
        """,
        (limit, claim),
    ).fetchall()


def assign_requeue_runs(conn: psycopg.Connection, runs: Mapping[str, Sequence[uuid.UUID]]) -> None:
    """Name the run each claimed render is requested in (``metadata.requeue_run``): that run
    renders exactly these rows, and its retries find them again."""
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE renders SET metadata = metadata || jsonb_build_object('requeue_run', %s::text) WHERE id = ANY(%s)",
            [(run_key, list(ids)) for run_key, ids in runs.items()],
        )


def requeued_for_run(conn: psycopg.Connection, run_key: str, style_id: str) -> list[dict]:
    """The renders of one style requested in the requeue run ``run_key``."""
    return conn.execute(
        """
        SELECT r.id, r.asset_id, r.size_preset_id, a.partition_key
        FROM renders r JOIN assets a ON a.id = r.asset_id
        WHERE r.metadata ->> 'requeue_run' = %s AND r.style_id = %s
        ORDER BY a.partition_key, r.size_preset_id
        """,
        (run_key, style_id),
    ).fetchall()
