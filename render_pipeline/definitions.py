"""The one Definitions object: assets, jobs, sensors and schedules with the resources the
environment asks for (embedded PostgreSQL and a local store by default, MinIO/S3 when set)."""

from __future__ import annotations

import warnings

from dagster import BetaWarning, Definitions, PreviewWarning, in_process_executor

from render_pipeline import imaging
from render_pipeline.assets.storage_usage import storage_usage
from render_pipeline.jobs import MAINTENANCE_JOBS
from render_pipeline.maintenance.dead_runs import dead_run_sensor
from render_pipeline.render import render_definitions
from render_pipeline.resources.factory import dagster_resources
from render_pipeline.schedules import SCHEDULES
from render_pipeline.settings import ConfigError, Settings, load_settings

# Chosen on purpose and covered by tests: per-asset backfill policies (beta) batch backfills
# into ranged runs, and partitioned asset checks (preview) give each upload its own result.
warnings.filterwarnings("ignore", message=r".*backfill_policy.*", category=BetaWarning)
warnings.filterwarnings("ignore", message=r".*partitions_def on an AssetCheckSpec.*", category=PreviewWarning)


def build_definitions(settings: Settings) -> Definitions:
    styles = _known(settings.default_styles, imaging.STYLES, "RENDER_DEFAULT_STYLES") or list(imaging.STYLES)
    presets = _known(settings.default_presets, imaging.PRESETS, "RENDER_DEFAULT_PRESETS") or list(
        imaging.DEFAULT_PRESET_IDS
    )
    maintenance = Definitions(assets=[storage_usage], jobs=MAINTENANCE_JOBS, schedules=SCHEDULES, sensors=[dead_run_sensor])
    shared = Definitions(
        resources=dagster_resources(settings),
        # Ops of a run share its scratch directory and handoff; parallelism comes from concurrent runs.
        executor=in_process_executor,
    )
    return Definitions.merge(render_definitions(styles, presets), maintenance, shared)


def _known(ids: tuple[str, ...] | None, catalogue, variable: str) -> list[str] | None:
    if ids is None:
        return None
    unknown = [i for i in ids if i not in catalogue]
    if unknown:
        raise ConfigError(variable, f"unknown id(s) {', '.join(unknown)}", "choose from " + ", ".join(catalogue))
    return list(ids)


defs = build_definitions(load_settings())
