"""The job the sensors launch: validate uploads and render them, in one process per run."""

from __future__ import annotations

from dagster import AssetKey, AssetSelection, define_asset_job, in_process_executor

# Render runs pass images between ops in memory, so a run retry must re-execute every step.
RENDER_RUN_TAGS = {"render_pipeline/kind": "render", "dagster/retry_strategy": "ALL_STEPS"}
PARTITION_TAG = "dagster/partition"
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"

render_uploads_job = define_asset_job(
    name="render_uploads",
    selection=AssetSelection.assets(AssetKey("uploads")) | AssetSelection.groups("renders"),
    executor_def=in_process_executor,
    tags=RENDER_RUN_TAGS,
    description="Validate upload partitions and render them in every selected style.",
)
