"""Seeded maintenance scenarios with known expected counts.

The standard scenario: 1 000 renders over 250 uploads × 4 styles (preset square-1024):
  300 completed 100 days ago (expired at 90 days), objects present
   20 completed 10 days ago whose objects are missing
  520 completed 10 days ago, objects present
   10 archived whose preview object was left behind (orphans)
  100 failed: 60 failed 10 days ago, 40 failed yesterday
   30 started 10 minutes ago, 20 queued 10 minutes ago
plus 40 objects of 20 render ids that have no row (orphans; 50 orphans in all), 10 registered
upload objects and 7 unregistered ones (5 valid keys, 2 invalid keys).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from psycopg.types.json import Jsonb

from render_pipeline.keys import asset_id_for, partition_key_for, render_id_for, render_object_keys
from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.object_store import ObjectStore, S3ObjectStore

STYLES = ("pop-poster", "halftone", "warhol-grid", "duotone")
PRESET = "square-1024"
PNG = b"\x89PNG fake output"
JPEG = b"\xff\xd8 fake preview"


@dataclass
class Scenario:
    expired: list[uuid.UUID] = field(default_factory=list)
    missing: list[uuid.UUID] = field(default_factory=list)
    live: list[uuid.UUID] = field(default_factory=list)
    archived: list[uuid.UUID] = field(default_factory=list)
    failed_old: list[uuid.UUID] = field(default_factory=list)
    failed_recent: list[uuid.UUID] = field(default_factory=list)
    started: list[uuid.UUID] = field(default_factory=list)
    queued: list[uuid.UUID] = field(default_factory=list)
    orphan_keys: list[str] = field(default_factory=list)
    unregistered_valid: list[str] = field(default_factory=list)
    unregistered_invalid: list[str] = field(default_factory=list)


def insert_asset(conn, object_key: str) -> uuid.UUID:
    asset_id = asset_id_for(object_key)
    conn.execute(
        """INSERT INTO assets (id, partition_key, object_key, filename, status, validated_at)
           VALUES (%s, %s, %s, %s, 'valid', now())""",
        (asset_id, partition_key_for(object_key), object_key, object_key.rsplit("/", 1)[-1]),
    )
    return asset_id


def insert_render(conn, asset_id: uuid.UUID, style: str, status: str, *, age: timedelta,
                  run_id: str | None = None, attempt: int = 1, duration_ms: float | None = None,
                  error: str = "quantize: boom") -> uuid.UUID:
    """One render row in ``status``, whose last transition happened ``age`` ago."""
    render_id = render_id_for(asset_id, style, PRESET)
    output_key, preview_key = render_object_keys(render_id)
    at = datetime.now(UTC) - age
    done = status in ("completed", "archived")
    conn.execute(
        """
        INSERT INTO renders (id, asset_id, style_id, size_preset_id, status, error_message, attempt,
            dagster_run_id, created_at, updated_at, started_at, completed_at, archived_at,
            output_minio_key, preview_minio_key, render_metadata)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            render_id, asset_id, style, PRESET, status, error if status == "failed" else None, attempt, run_id,
            at - timedelta(minutes=1), at, at if status != "queued" else None, at if done else None,
            at if status == "archived" else None, output_key if done else None, preview_key if done else None,
            Jsonb({"duration_ms": duration_ms} if duration_ms is not None else {}),
        ),
    )
    return render_id


def put_all(store: ObjectStore, items: Iterable[tuple[str, bytes]]) -> None:
    """Seed objects.  For the S3 server (moto, in this process) the objects are written straight
    into its state — ~100× faster than 1 700 PUTs; the code under test still uses HTTP."""
    if isinstance(store, S3ObjectStore):
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
        for key, data in items:
            backend.put_object(store.bucket, key, data)
        return
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda kv: store.put(kv[0], kv[1]), items))


def seed_standard(database: PostgresResource, store: ObjectStore) -> Scenario:
    s = Scenario()
    kinds = (
        [("completed", timedelta(days=100), s.expired)] * 300
        + [("completed", timedelta(days=10), s.missing)] * 20
        + [("completed", timedelta(days=10), s.live)] * 520
        + [("archived", timedelta(days=100), s.archived)] * 10
        + [("failed", timedelta(days=10), s.failed_old)] * 60
        + [("failed", timedelta(days=1), s.failed_recent)] * 40
        + [("started", timedelta(minutes=10), s.started)] * 30
        + [("queued", timedelta(minutes=10), s.queued)] * 20
    )
    objects: list[tuple[str, bytes]] = []
    with database.transaction() as conn:
        asset_ids = [insert_asset(conn, f"uploads/asset-{i:03d}/photo.jpg") for i in range(250)]
        for n, (status, age, bucket) in enumerate(kinds):
            render_id = insert_render(conn, asset_ids[n // 4], STYLES[n % 4], status, age=age)
            bucket.append(render_id)
    for render_id in s.expired + s.live:
        output_key, preview_key = render_object_keys(render_id)
        objects += [(output_key, PNG), (preview_key, JPEG)]
    for render_id in s.archived:
        s.orphan_keys.append(render_object_keys(render_id)[1])
    for i in range(20):
        s.orphan_keys += list(render_object_keys(uuid.uuid5(uuid.NAMESPACE_URL, f"no-row-{i}")))
    objects += [(key, JPEG) for key in s.orphan_keys]
    objects += [(f"uploads/asset-{i:03d}/photo.jpg", JPEG) for i in range(10)]
    s.unregistered_valid = [f"uploads/late-{i}/photo.jpg" for i in range(5)]
    s.unregistered_invalid = ["uploads/no-folder.jpg", "uploads/a/b/too-deep.jpg"]
    objects += [(key, JPEG) for key in s.unregistered_valid + s.unregistered_invalid]
    put_all(store, objects)
    return s


def all_keys(store: ObjectStore, prefix: str = "") -> set[str]:
    return {obj.key for obj in store.iter_objects(prefix)}


def statuses(database: PostgresResource, render_ids: Iterable[uuid.UUID]) -> dict[str, int]:
    with database.connection() as conn:
        rows = conn.execute(
            "SELECT status, count(*) AS n FROM renders WHERE id = ANY(%s) GROUP BY status", (list(render_ids),)
        ).fetchall()
    return {row["status"]: row["n"] for row in rows}


def snapshot(database: PostgresResource) -> list[tuple]:
    """Everything a maintenance job could change in the tables."""
    with database.connection() as conn:
        renders = conn.execute(
            "SELECT id, status, attempt, error_message, updated_at, archived_at, metadata::text FROM renders ORDER BY id"
        ).fetchall()
        assets = conn.execute("SELECT id, status, updated_at FROM assets ORDER BY id").fetchall()
    return [tuple(r.values()) for r in renders] + [tuple(a.values()) for a in assets]
