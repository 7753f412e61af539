"""The requeue sensor: renders an operator (or the reaper) requeued → ranged render runs.

Each evaluation claims the requeued rows no run was requested for, in one statement under
row locks (``renders_store.claim_requeued``), so two evaluations — a re-evaluated tick, or
the next tick while the runs wait in the queue — never request the same render twice.  The
claimed rows are grouped per style and preset set into ranged runs of many uploads (the
render assets are partitioned by upload), and each row is marked with its run's key: the
key is stable, so Dagster launches the run once, and the run renders exactly those rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from render_pipeline.render.events import render_asset_key
from render_pipeline.render.job import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    RENDER_RUN_TAGS,
    REQUEUE_RUN_TAG,
    render_uploads_job,
)
from render_pipeline.render.partitions import uploads_partitions
from render_pipeline.render.sensors import split_into_runs
from render_pipeline.resources.database import PostgresResource
from render_pipeline.store import renders as renders_store

REQUEUE_BATCH = 2000  # renders claimed per evaluation


@dataclass(frozen=True)
class RequeuedUpload:
    """One upload's claimed renders of one style."""

    partition_key: str
    style_id: str
    presets: tuple[str, ...]
    render_ids: tuple[uuid.UUID, ...]


@sensor(
    name="requeue_sensor",
    job=render_uploads_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Launches runs for renders an operator requeued (`render-pipeline requeue`).",
)
def requeue_sensor(context: SensorEvaluationContext, database: PostgresResource) -> SensorResult | SkipReason:
    claim = f"requeue:{uuid.uuid4().hex[:16]}"
    with database.transaction() as conn:
        rows = renders_store.claim_requeued(conn, claim, limit=REQUEUE_BATCH)
        if not rows:
            return SkipReason("no requeued renders waiting for a run")
        order = {key: index for index, key in enumerate(context.instance.get_dynamic_partitions(uploads_partitions.name))}
        uploads = _uploads(rows, order)
        runs = [batch for group in _groups(uploads) for batch in split_into_runs(group)]
        run_keys = {f"{claim}:{index}": batch for index, batch in enumerate(runs)}
        renders_store.assign_requeue_runs(
            conn, {key: [rid for upload in batch for rid in upload.render_ids] for key, batch in run_keys.items()}
        )
    unknown = len(rows) - sum(len(u.render_ids) for u in uploads)
    if unknown:
        context.log.warning(f"{unknown} requeued render(s) belong to uploads that are not Dagster partitions; "
                            "the stale-render reaper requeues or fails them")
    context.log.info(f"claimed {len(rows)} requeued render(s) of {len(uploads)} (upload, style) pair(s) "
                     f"in {len(run_keys)} run(s)")
    return SensorResult(run_requests=[_run_request(key, batch) for key, batch in run_keys.items()])


def _uploads(rows: Sequence[dict], order: dict[str, int]) -> list[RequeuedUpload]:
    """The claimed rows per (upload, style), in partition order; rows of unknown partitions
    are left out (a range cannot name them)."""
    by_pair: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        if row["partition_key"] in order:
            by_pair.setdefault((row["partition_key"], row["style_id"]), []).append(row)
    pairs = sorted(by_pair.items(), key=lambda item: (item[0][1], order[item[0][0]]))
    return [
        RequeuedUpload(partition_key, style_id, tuple(sorted(r["size_preset_id"] for r in group)),
                       tuple(r["id"] for r in group))
        for (partition_key, style_id), group in pairs
    ]


def _groups(uploads: Sequence[RequeuedUpload]) -> list[list[RequeuedUpload]]:
    """Uploads that can share runs: the same style and the same presets."""
    groups: dict[tuple[str, tuple[str, ...]], list[RequeuedUpload]] = {}
    for upload in uploads:
        groups.setdefault((upload.style_id, upload.presets), []).append(upload)
    return list(groups.values())


def _run_request(run_key: str, batch: Sequence[RequeuedUpload]) -> RunRequest:
    """A ranged run of one style over the batch's uploads; the rows marked with ``run_key``
    say which renders of the range it does (the range may span uploads not in the batch)."""
    style_id, presets = batch[0].style_id, batch[0].presets
    key = render_asset_key(style_id)
    return RunRequest(
        run_key=run_key,
        asset_selection=[key],
        run_config={"ops": {key.to_python_identifier(): {"config": {"presets": list(presets)}}}},
        tags={
            **RENDER_RUN_TAGS,
            PARTITION_RANGE_START_TAG: batch[0].partition_key,
            PARTITION_RANGE_END_TAG: batch[-1].partition_key,
            REQUEUE_RUN_TAG: run_key,
            "render_pipeline/requeue": "true",
            "render_pipeline/uploads": str(len(batch)),
        },
    )
