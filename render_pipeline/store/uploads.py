"""Queries on `assets`: what the upload sensor knows, and what validation found."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

# A registration whose run never reported back within this time is requested again.
REREQUEST_AFTER_SECONDS = 600
_CLAIM_LOCK_ID = 0x55504C44  # arbitrary constant: "UPLD"


@dataclass(frozen=True)
class UploadSighting:
    """One object seen in the listing that needs a run."""

    asset_id: uuid.UUID
    object_key: str
    partition_key: str
    etag: str
    size: int
    claimed_at: datetime | None = None  # set once this sensor evaluation has claimed it


@dataclass(frozen=True)
class UploadRow:
    id: uuid.UUID
    partition_key: str | None
    object_key: str
    status: str
    etag: str | None
    sha256: str | None
    error_message: str | None


def versions_needing_runs(conn: psycopg.Connection, versions: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Of these (object_key, etag) pairs, the ones with no run requested or completed yet.

    A pair is settled once its row carries that ETag and is valid/invalid, or was requested
    less than REREQUEST_AFTER_SECONDS ago (a lost request is therefore retried, not forgotten).
    """
    if not versions:
        return set()
    keys = [key for key, _ in versions]
    rows = conn.execute(
        """
        SELECT object_key, etag FROM assets
        WHERE object_key = ANY(%s)
          AND (status IN ('valid', 'invalid')
               OR requested_at > now() - make_interval(secs => %s))
        """,
        (keys, REREQUEST_AFTER_SECONDS),
    ).fetchall()
    settled = {(row["object_key"], row["etag"]) for row in rows}
    return {pair for pair in versions if pair not in settled}


def mark_requested(conn: psycopg.Connection, sightings: Sequence[UploadSighting]) -> dict[uuid.UUID, datetime]:
    """Claim these object versions for a run (status `registered`); returns the asset ids
    claimed, each with its claim's time (a request again after REREQUEST_AFTER_SECONDS is a
    new claim, so it gets a run key of its own).

    A version is claimed only if it still needs a run (the same rule as versions_needing_runs),
    decided row by row under PostgreSQL's row lock in one statement: when two sensor
    evaluations race on the same listing, each version is claimed by exactly one of them, so
    it is requested by exactly one run.
    """
    if not sightings:
        return {}
    with conn.transaction():
        # The row's id and its partition key are both unique: ON CONFLICT (id) alone lets two
        # racing inserts of a new key fail on the partition-key index, so claims take turns.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CLAIM_LOCK_ID,))
        return _claim(conn, sightings)


def _claim(conn: psycopg.Connection, sightings: Sequence[UploadSighting]) -> dict[uuid.UUID, datetime]:
    rows = conn.execute(
        """
        INSERT INTO assets AS a (id, partition_key, object_key, filename, etag, status, requested_at)
        SELECT id, partition_key, object_key, filename, etag, 'registered', now()
        FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[])
             AS s(id, partition_key, object_key, filename, etag)
        ORDER BY id  -- one lock order for every evaluation: racing claims cannot deadlock
        ON CONFLICT (id) DO UPDATE SET
            etag = EXCLUDED.etag, status = 'registered', requested_at = now(),
            error_code = NULL, error_message = NULL, updated_at = now()
        WHERE a.etag IS DISTINCT FROM EXCLUDED.etag
           OR NOT (a.status IN ('valid', 'invalid')  -- requested_at is NULL for rows others registered
                   OR coalesce(a.requested_at > now() - make_interval(secs => %s), false))
        RETURNING id, requested_at
        """,
        (
            [s.asset_id for s in sightings], [s.partition_key for s in sightings],
            [s.object_key for s in sightings], [s.partition_key.rsplit("/", 1)[-1] for s in sightings],
            [s.etag for s in sightings], REREQUEST_AFTER_SECONDS,
        ),
    ).fetchall()
    return {row["id"]: row["requested_at"] for row in rows}


def note_run_failed(conn: psycopg.Connection, partition_keys: Sequence[str], reason: str) -> int:
    """Uploads of a failed run that are still `registered` (never validated) say why.

    They stay `registered`, since the file may be fine: the sensor requests them again after
    REREQUEST_AFTER_SECONDS, and that claim clears the note.
    """
    if not partition_keys:
        return 0
    cursor = conn.execute(
        """
        UPDATE assets SET error_code = 'run_failed', error_message = %s, updated_at = now()
        WHERE partition_key = ANY(%s) AND status = 'registered'
        """,
        (reason, list(partition_keys)),
    )
    return cursor.rowcount


def record_invalid_key(conn: psycopg.Connection, *, asset_id: uuid.UUID, object_key: str, etag: str,
                       reason: str) -> None:
    """An object whose key cannot become a partition: recorded `invalid`, never rendered."""
    conn.execute(
        """
        INSERT INTO assets (id, partition_key, object_key, filename, etag, status, error_code, error_message,
                            validated_at)
        VALUES (%s, NULL, %s, NULL, %s, 'invalid', 'invalid_key', %s, now())
        ON CONFLICT (id) DO UPDATE SET
            etag = EXCLUDED.etag, status = 'invalid', error_code = 'invalid_key',
            error_message = EXCLUDED.error_message, validated_at = now(), updated_at = now()
        """,
        (asset_id, object_key, etag, reason),
    )


def record_validation(
    conn: psycopg.Connection,
    *,
    asset_id: uuid.UUID,
    partition_key: str,
    object_key: str,
    etag: str | None,
    byte_size: int | None,
    sha256: str | None,
    image_format: str | None,
    width: int | None,
    height: int | None,
    error_code: str | None,
    error_message: str | None,
    metadata: dict,
    run_id: str,
) -> None:
    """Store what validating one upload found: `valid` with its facts, or `invalid` with a reason."""
    conn.execute(
        """
        INSERT INTO assets (id, partition_key, object_key, filename, etag, byte_size, sha256, format, width,
                            height, status, error_code, error_message, metadata, dagster_run_id, validated_at)
        VALUES (%(id)s, %(pk)s, %(key)s, %(filename)s, %(etag)s, %(size)s, %(sha)s, %(format)s, %(width)s,
                %(height)s, %(status)s, %(code)s, %(message)s, %(metadata)s, %(run_id)s, now())
        ON CONFLICT (id) DO UPDATE SET
            etag = EXCLUDED.etag, byte_size = EXCLUDED.byte_size, sha256 = EXCLUDED.sha256,
            format = EXCLUDED.format, width = EXCLUDED.width, height = EXCLUDED.height,
            status = EXCLUDED.status, error_code = EXCLUDED.error_code,
            error_message = EXCLUDED.error_message, metadata = EXCLUDED.metadata,
            dagster_run_id = EXCLUDED.dagster_run_id, validated_at = now(), updated_at = now()
        """,
        {
            "id": asset_id, "pk": partition_key, "key": object_key, "filename": partition_key.rsplit("/", 1)[-1],
            "etag": etag, "size": byte_size, "sha": sha256, "format": image_format, "width": width,
            "height": height, "status": "invalid" if error_code else "valid", "code": error_code,
            "message": error_message, "metadata": Jsonb(metadata), "run_id": run_id,
        },
    )


def uploads_by_partition(conn: psycopg.Connection, partition_keys: Sequence[str]) -> dict[str, UploadRow]:
    rows = conn.execute(
        """
        SELECT id, partition_key, object_key, status, etag, sha256, error_message
        FROM assets WHERE partition_key = ANY(%s)
        """,
        (list(partition_keys),),
    ).fetchall()
    return {row["partition_key"]: UploadRow(**row) for row in rows}

