"""The job the sensors launch: validate uploads and render them, in one process per run."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from dagster import AssetKey, AssetSelection, define_asset_job, in_process_executor

from render_pipeline.run_policies import RENDER_KIND

# Render runs pass images between ops in memory, so a run retry must re-execute every step.
# A retry skips the renders already completed, so it is safe after any failure, a step's
# included: e.g. Dagster's own event write failing during a PostgreSQL restart, which no op
# retry policy covers (dagster.yaml keeps retry_on_asset_or_op_failure off for other jobs).
RENDER_RUN_TAGS = {**RENDER_KIND, "dagster/retry_strategy": "ALL_STEPS", "dagster/retry_on_asset_or_op_failure": "true"}
PARTITION_TAG = "dagster/partition"
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
# A requeue run renders exactly the rows marked with its run key (metadata.requeue_run).
REQUEUE_RUN_TAG = "render_pipeline/requeue_run"


def partition_keys_of(tags: Mapping[str, str], ordered_keys: Callable[[], Sequence[str]]) -> list[str]:
    """The upload partitions a run covers: its one partition, or its range in partition order
    (``ordered_keys`` returns every key in that order; it is called only for a range)."""
    if PARTITION_TAG in tags:
        return [tags[PARTITION_TAG]]
    start, end = tags.get(PARTITION_RANGE_START_TAG), tags.get(PARTITION_RANGE_END_TAG)
    if start is None or end is None:
        return []
    keys = list(ordered_keys())
    if start not in keys or end not in keys:
        return []
    return keys[keys.index(start) : keys.index(end) + 1]

render_uploads_job = define_asset_job(
    name="render_uploads",
    selection=AssetSelection.assets(AssetKey("uploads")) | AssetSelection.groups("renders"),
    executor_def=in_process_executor,
    tags=RENDER_RUN_TAGS,
    description="Validate upload partitions and render them in every selected style.",
)
