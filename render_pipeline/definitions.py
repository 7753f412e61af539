"""The one Definitions object: assets, jobs, sensors and schedules with the resources the
environment asks for (embedded PostgreSQL and a local store by default, MinIO/S3 when set)."""

from __future__ import annotations

import warnings

from dagster import BetaWarning, Definitions, PreviewWarning, in_process_executor

from render_pipeline import imaging
from render_pipeline.assets.renders import build_presets_check, build_render_asset
from render_pipeline.assets.storage_usage import storage_usage
from render_pipeline.assets.uploads import build_uploads_asset
from render_pipeline.io_managers import render_handoff_io_manager
from render_pipeline.jobs import MAINTENANCE_JOBS
from render_pipeline.ops.render import HANDOFF_IO_MANAGER
from render_pipeline.render_job import render_uploads_job
from render_pipeline.resources.factory import dagster_resources
from render_pipeline.schedules import SCHEDULES
from render_pipeline.sensors import (
    build_uploads_sensor,
    render_run_canceled_sensor,
    render_run_failure_sensor,
    requeue_sensor,
)
from render_pipeline.settings import ConfigError, Settings, load_settings


# Chosen on purpose and covered by tests: per-asset backfill policies (beta) batch backfills
# into ranged runs, and partitioned asset checks (preview) check exactly the run's uploads.
warnings.filterwarnings("ignore", message=r".*backfill_policy.*", category=BetaWarning)
warnings.filterwarnings("ignore", message=r".*partitions_def on an AssetCheckSpec.*", category=PreviewWarning)


def build_definitions(settings: Settings) -> Definitions:
    styles = _known(settings.default_styles, imaging.STYLES, "RENDER_DEFAULT_STYLES") or list(imaging.STYLES)
    presets = _known(settings.default_presets, imaging.PRESETS, "RENDER_DEFAULT_PRESETS") or list(
        imaging.DEFAULT_PRESET_IDS
    )
    specs = [imaging.get_style(style_id) for style_id in imaging.STYLES]
    return Definitions(
        assets=[build_uploads_asset(presets), *(build_render_asset(spec, presets) for spec in specs), storage_usage],
        asset_checks=[build_presets_check(spec) for spec in specs],
        jobs=[render_uploads_job, *MAINTENANCE_JOBS],
        schedules=SCHEDULES,
        sensors=[build_uploads_sensor(styles), requeue_sensor, render_run_failure_sensor, render_run_canceled_sensor],
        resources={**dagster_resources(settings), HANDOFF_IO_MANAGER: render_handoff_io_manager},
        # Renders hand images between ops in memory; parallelism comes from concurrent runs.
        executor=in_process_executor,
    )


def _known(ids: tuple[str, ...] | None, catalogue, variable: str) -> list[str] | None:
    if ids is None:
        return None
    unknown = [i for i in ids if i not in catalogue]
    if unknown:
        raise ConfigError(variable, f"unknown id(s) {', '.join(unknown)}", "choose from " + ", ".join(catalogue))
    return list(ids)


defs = build_definitions(load_settings())
