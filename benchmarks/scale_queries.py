"""The production queries the scale benchmark times, each with the parameters its caller passes.

Each entry calls one function of `render_pipeline.store` exactly as the command, job or sensor
named beside it does (defaults from their configs); the ids and keys they look up are sampled
from the loaded data the way a listing page or a batch would present them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from render_pipeline.maintenance.history import HistoryConfig
from render_pipeline.maintenance.reaper import ReaperConfig
from render_pipeline.maintenance.retention import RetentionConfig
from render_pipeline.metrics import DURATION_BUCKETS
from render_pipeline.resources.object_store import LIST_PAGE_SIZE
from render_pipeline.store import maintenance as store
from render_pipeline.store import renders as render_store
from render_pipeline.store import uploads as upload_store

REQUEUE_LIMIT = 1000 + 1  # `requeue`'s default --limit, plus the row that says "more match"
SENSOR_PAGE = 1000  # object keys per listing page the upload sensor checks at once
PAGE_START = uuid.UUID("80000000-0000-0000-0000-000000000000")  # a listing page mid-way through renders/


@dataclass(frozen=True)
class ProductionQuery:
    name: str
    call: Callable[[psycopg.Connection], object]


def _samples(conn: psycopg.Connection) -> dict:
    """Ids and keys as a listing page or a batch would present them (ids are hashes, so the
    first ones in id order are a sample across time)."""
    page = [row["id"] for row in conn.execute(
        "SELECT id FROM renders WHERE id > %s ORDER BY id LIMIT %s", (PAGE_START, LIST_PAGE_SIZE // 2))]
    run_ids = [row["dagster_run_id"] for row in conn.execute(
        "SELECT dagster_run_id FROM renders WHERE dagster_run_id IS NOT NULL ORDER BY id LIMIT %s",
        (HistoryConfig().batch_size,))]
    keys = [row["object_key"] for row in conn.execute("SELECT object_key FROM assets ORDER BY id LIMIT %s",
                                                       (SENSOR_PAGE,))]
    return {"page": page, "run_ids": run_ids, "keys": keys, "etags": [(key, "new-etag") for key in keys]}


def CATALOGUE(conn: psycopg.Connection) -> list[ProductionQuery]:  # noqa: N802 - a table of queries
    s = _samples(conn)
    now = datetime.now(UTC)
    reaper, retention = ReaperConfig(), RetentionConfig()
    return [
        # render-pipeline requeue / failures (the runbook)
        ProductionQuery("requeue --since 24h (failed by time)", lambda c: store.select_failed(
            c, failed_after=now - timedelta(hours=24), limit=REQUEUE_LIMIT)),
        ProductionQuery("requeue --style halftone --since 7d (failed by style)", lambda c: store.select_failed(
            c, style_ids=["halftone"], failed_after=now - timedelta(days=7), limit=REQUEUE_LIMIT)),
        ProductionQuery("requeue --error-like '%timed out%'", lambda c: store.select_failed(
            c, error_ilike="%timed out%", limit=REQUEUE_LIMIT)),
        ProductionQuery("requeue --all-failed", lambda c: store.select_failed(c, limit=REQUEUE_LIMIT)),
        ProductionQuery("requeue --all-failed --include-archived", lambda c: store.select_failed(
            c, include_archived=True, limit=REQUEUE_LIMIT)),
        ProductionQuery("requeue --id ×1000: mark queued", lambda c: store.requeue(
            c, [row["id"] for row in store.select_failed(c, limit=1000)], reason="bench")),
        ProductionQuery("failures --since 24h (GROUP BY error_message)", lambda c: store.failure_summary(
            c, failed_after=now - timedelta(hours=24), limit=20)),
        ProductionQuery("failures --since 7d --include-archived", lambda c: store.failure_summary(
            c, failed_after=now - timedelta(days=7), include_archived=True, limit=20)),
        # stale-render reaper
        ProductionQuery("reaper: started older than 60 min", lambda c: store.stale_started(
            c, older_than=timedelta(minutes=reaper.started_limit_minutes), after_id=store.FIRST_ID,
            limit=reaper.batch_size)),
        ProductionQuery("reaper: queued older than 6 h", lambda c: store.stale_queued(
            c, older_than=timedelta(minutes=reaper.queued_limit_minutes), after_id=store.FIRST_ID,
            limit=reaper.batch_size)),
        # retention cleanup
        ProductionQuery("retention: expired completed batch (FOR UPDATE)", lambda c: store.lock_expired_completed(
            c, older_than=timedelta(days=retention.retention_days), after=store.FIRST_COMPLETED,
            limit=retention.batch_size)),
        ProductionQuery("retention: count failed to archive (dry run)", lambda c: store.count_old_failed(
            c, older_than=timedelta(days=retention.failed_archive_days))),
        ProductionQuery("retention: flag failed archived batch", lambda c: store.flag_old_failed_archived(
            c, older_than=timedelta(days=retention.failed_archive_days), limit=retention.batch_size)),
        # orphan reconciliation, per listed page
        ProductionQuery("orphans: statuses of a listed page", lambda c: store.render_statuses(c, s["page"])),
        ProductionQuery("orphans: completed in the page's id range", lambda c: store.completed_in_id_range(
            c, after_id=PAGE_START, upto_id=s["page"][-1], completed_before=now - timedelta(hours=24),
            limit=LIST_PAGE_SIZE)),
        ProductionQuery("orphans: registered upload keys of a page", lambda c: store.registered_object_keys(
            c, s["keys"])),
        # Dagster history retention, sensors
        ProductionQuery("history: run ids still needed (batch)", lambda c: store.run_ids_still_needed(
            c, s["run_ids"])),
        ProductionQuery("upload sensor: versions needing runs (page)", lambda c: upload_store.versions_needing_runs(
            c, s["etags"])),
        ProductionQuery("requeue sensor: claim requeued renders", lambda c: render_store.claim_requeued(
            c, "requeue:bench", limit=500)),
        ProductionQuery("requeue run: its renders of one style", lambda c: render_store.requeued_for_run(
            c, "requeue:bench:0", "duotone")),
        # metrics exporter (each scrape)
        ProductionQuery("metrics: render counts per style and status", store.render_counts),
        ProductionQuery("metrics: duration histogram", lambda c: store.duration_histogram(c, DURATION_BUCKETS)),
    ]
