"""Each upload partition's own events, however many partitions a run covers.

A ranged run's outputs would give every partition in the range the same materialization.
The render ops therefore report partition by partition instead: a render asset's upload op
emits one ``AssetMaterialization`` per partition that has renders (with that partition's
renders, palette and preview) and one ``presets_complete`` evaluation per partition, so an
invalid or failed upload is not materialized and its check says why.  The `uploads` step
attaches each partition's validation result to that partition's materialization and
evaluates ``upload_is_valid`` per partition.

The render materializations carry Dagster's data-provenance tags (code version, the
`uploads` materialization they were rendered from, and a data version derived from the
output bytes), so the UI marks them stale exactly as it would its own materializations: when
the style's version changes or the upload is validated again.

A step's materializations are logged as one batch, the way Dagster logs those it derives from
a partitioned output: with DAGSTER_EVENT_BATCH_SIZE set (every launch path sets it) they are
stored by one ``store_event_batch`` — a few statements for the whole step — instead of four
statements each.  Yielded, each would be written on its own.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    AssetMaterialization,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    EventLogRecord,
    MetadataValue,
    OpExecutionContext,
)

# Public in the event it is part of (AssetCheckEvaluation), not exported on its own.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
# What Dagster's own step execution logs a partitioned output's materializations with
# (execute_step._log_materialization_or_observation_events_for_asset).  Private: dagster is
# pinned, and render/test_events.py fails if the batch stops being one write.
from dagster._core.events import DagsterEvent, DagsterEventBatchMetadata, generate_event_batch_id

from render_pipeline import imaging
from render_pipeline.render.metadata import render_partition_metadata, upload_check_metadata
from render_pipeline.store.renders import CompletedRender
from render_pipeline.store.uploads import UploadRow

UPLOADS_KEY = AssetKey("uploads")
PRESETS_CHECK = "presets_complete"
VALID_CHECK = "upload_is_valid"
# Dagster's data-provenance tags (read back by dagster's DataProvenance.from_tags).
CODE_VERSION_TAG = "dagster/code_version"
DATA_VERSION_TAG = "dagster/data_version"
DATA_VERSION_IS_USER_PROVIDED_TAG = "dagster/data_version_is_user_provided"
INPUT_DATA_VERSION_TAG = f"dagster/input_data_version/{UPLOADS_KEY.to_user_string()}"
INPUT_EVENT_POINTER_TAG = f"dagster/input_event_pointer/{UPLOADS_KEY.to_user_string()}"


def render_asset_key(style_id: str) -> AssetKey:
    """The style's asset key, `renders/<style id>` with the id as the catalogue spells it
    (`renders/pop-poster`): the one mapping every selection, check and event goes through.
    Dagster takes any string as a key component; only op and graph names need identifiers."""
    return AssetKey(["renders", style_id])


@dataclass(frozen=True)
class PartitionCheck:
    """One partition's check result, before it is aimed at its materialization."""

    partition_key: str
    passed: bool
    description: str
    metadata: Mapping[str, MetadataValue]


@dataclass(frozen=True)
class CompletedItem:
    """A render completed by this run, with its preview for the partition's metadata."""

    partition_key: str
    record: CompletedRender
    preview_jpeg: bytes


def render_partition_events(
    context: OpExecutionContext,
    style: imaging.StyleSpec,
    presets: Sequence[str],
    asset_ids: Mapping[str, uuid.UUID],
    uploads: Mapping[str, UploadRow],
    rows: Sequence[Mapping],
    completed: Sequence[CompletedItem],
) -> Iterator[AssetCheckEvaluation]:
    """For each partition of the run: its materialization (if this run rendered any of its
    presets), logged as one batch, and its ``presets_complete`` evaluation, yielded, from the
    rows as they now stand."""
    key = render_asset_key(style.id)
    code_version = f"{style.id}@{style.version}"
    provenance = latest_materializations(context.instance, UPLOADS_KEY, list(asset_ids))
    rows_by_upload: dict[uuid.UUID, dict[str, Mapping]] = {}
    for row in rows:
        rows_by_upload.setdefault(row["asset_id"], {})[row["size_preset_id"]] = row
    completed_by_partition: dict[str, list[CompletedItem]] = {}
    for item in completed:
        completed_by_partition.setdefault(item.partition_key, []).append(item)

    checks, materializations = [], []
    for partition_key, asset_id in asset_ids.items():
        mine = completed_by_partition.get(partition_key, [])
        problems = _preset_problems(uploads.get(partition_key), rows_by_upload.get(asset_id, {}), presets, mine,
                                    style.version)
        if mine:
            materializations.append(
                _materialization(key, code_version, partition_key, mine, presets, provenance.get(partition_key)))
        checks.append(PartitionCheck(
            partition_key,
            passed=not problems,
            description="; ".join(problems) if problems else f"all {len(presets)} preset(s) completed",
            metadata=_check_metadata(presets, mine),
        ))
    log_materializations(context, materializations)
    yield from check_evaluations(context.instance, key, PRESETS_CHECK, checks)


def unchecked_partition_events(
    context: OpExecutionContext,
    style: imaging.StyleSpec,
    presets: Sequence[str],
    partition_keys: Sequence[str],
    completed: Sequence[CompletedItem],
    reason: str,
) -> Iterator[AssetCheckEvaluation]:
    """The run's events when the rows behind ``presets_complete`` cannot be read: each
    partition's materialization of what this run wrote, and an evaluation per partition that
    fails as an error of the check (it could not look) — the renders themselves stand."""
    key = render_asset_key(style.id)
    code_version = f"{style.id}@{style.version}"
    checks, materializations = [], []
    for partition_key in partition_keys:
        mine = [item for item in completed if item.partition_key == partition_key]
        if mine:
            materializations.append(_materialization(key, code_version, partition_key, mine, presets, None))
        checks.append(PartitionCheck(
            partition_key, passed=False,
            description=f"not evaluated: the render rows could not be read ({reason}); this run wrote "
                        f"{len(mine)} of {len(presets)} preset(s)",
            metadata=_check_metadata(presets, mine),
        ))
    log_materializations(context, materializations)
    yield from check_evaluations(context.instance, key, PRESETS_CHECK, checks)


def log_materializations(context: OpExecutionContext, materializations: Sequence[AssetMaterialization]) -> None:
    """Log ``materializations`` from this step as one event batch (see the module docstring);
    creating a step's event is what logs it.  They reach the event log (and the UI) like any
    other; only an in-process result's own event list (``execute_in_process().all_events``)
    does not hold them, since they are not yielded."""
    step_context = context.get_step_execution_context()
    batch_id = generate_event_batch_id()
    for index, materialization in enumerate(materializations):
        is_end = index == len(materializations) - 1
        DagsterEvent.asset_materialization(step_context, materialization, DagsterEventBatchMetadata(batch_id, is_end))


def _materialization(
    key: AssetKey, code_version: str, partition_key: str, mine: Sequence[CompletedItem], presets: Sequence[str],
    upload: EventLogRecord | None,
) -> AssetMaterialization:
    return AssetMaterialization(
        asset_key=key,
        partition=partition_key,
        description=f"{len(mine)} of {len(presets)} preset(s) rendered",
        metadata=render_partition_metadata([(c.record, c.preview_jpeg) for c in mine]),
        tags=_provenance_tags(code_version, upload, [c.record for c in mine]),
    )


def _check_metadata(presets: Sequence[str], mine: Sequence[CompletedItem]) -> dict[str, MetadataValue]:
    return {"presets": MetadataValue.int(len(presets)), "completed": MetadataValue.int(len(mine))}


def upload_check(facts: Mapping) -> PartitionCheck:
    """``upload_is_valid`` for one upload, with the reason it was refused."""
    return PartitionCheck(
        facts["partition_key"],
        passed=facts["status"] == "valid",
        description=(f"{facts['code']}: {facts['reason']}" if facts["status"] != "valid"
                     else "the upload decodes within the limits"),
        metadata=upload_check_metadata(facts),
    )


def _preset_problems(
    upload: UploadRow | None, rows: Mapping[str, Mapping], presets: Sequence[str], completed: Sequence[CompletedItem],
    style_version: int,
) -> list[str]:
    """Why a partition's requested presets are not all rendered, one line each (empty: all
    are completed rows at the preset's exact size, written by this run or — finished work a
    retry skipped — completed earlier for this upload version and style version)."""
    if upload is None:
        return ["the upload is not registered yet"]
    if upload.status != "valid":
        return [f"the upload is {upload.status}: {upload.error_message or 'no reason recorded'}"]
    written = {item.record.target.preset_id for item in completed}
    problems = []
    for preset in presets:
        row = rows.get(preset)
        if row is None:
            problems.append(f"{preset}: no render row")
        elif row["status"] != "completed":
            problems.append(f"{preset}: {row['status']} ({row['error_message'] or 'no reason'})")
        elif (row["width"], row["height"]) != (row["preset_width"], row["preset_height"]):
            problems.append(f"{preset}: {row['width']}×{row['height']} is not the preset size")
        elif preset not in written and (row["source_sha256"], row["style_version"]) != (upload.sha256, style_version):
            problems.append(f"{preset}: completed earlier for another upload or style version, not written by this run")
    return problems


def latest_materializations(
    instance: DagsterInstance, key: AssetKey, partition_keys: Sequence[str]
) -> dict[str, EventLogRecord]:
    """Each partition's latest materialization record: two queries for the whole batch."""
    latest = instance.event_log_storage.get_latest_storage_id_by_partition(
        key, DagsterEventType.ASSET_MATERIALIZATION, set(partition_keys)
    )
    if not latest:
        return {}
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, storage_ids=list(latest.values())), limit=len(latest)
    ).records
    return {record.partition_key: record for record in records if record.partition_key is not None}


def check_evaluations(
    instance: DagsterInstance, key: AssetKey, check_name: str, results: Sequence[PartitionCheck]
) -> Iterator[AssetCheckEvaluation]:
    """One evaluation per partition, each aimed at that partition's latest materialization
    (as Dagster's own ``AssetCheckResult`` does), yielded after the materializations."""
    targets = latest_materializations(instance, key, [result.partition_key for result in results])
    for result in results:
        target = targets.get(result.partition_key)
        yield AssetCheckEvaluation(
            asset_key=key,
            check_name=check_name,
            partition=result.partition_key,
            passed=result.passed,
            severity=AssetCheckSeverity.ERROR,
            description=result.description[:1000],
            metadata=result.metadata,
            target_materialization_data=(
                AssetCheckEvaluationTargetMaterializationData(
                    storage_id=target.storage_id, run_id=target.run_id, timestamp=target.timestamp
                ) if target else None
            ),
        )


def _provenance_tags(
    code_version: str, upload: EventLogRecord | None, records: Sequence[CompletedRender]
) -> dict[str, str]:
    data_version = hashlib.sha256(
        "\n".join(sorted(f"{r.target.preset_id}:{r.output_sha256}" for r in records)).encode()
    ).hexdigest()[:32]
    tags = {CODE_VERSION_TAG: code_version, DATA_VERSION_TAG: data_version, DATA_VERSION_IS_USER_PROVIDED_TAG: "true"}
    if upload is not None:
        tags[INPUT_DATA_VERSION_TAG] = upload.event_log_entry.tags.get(DATA_VERSION_TAG, "")
        tags[INPUT_EVENT_POINTER_TAG] = str(upload.storage_id)
    return tags
