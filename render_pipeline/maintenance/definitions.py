"""The maintenance slice as one Definitions: the `storage_usage` asset, a job per procedure,
their schedules and the dead-run sensor (resources come from `render_pipeline.definitions`)."""

from __future__ import annotations

from dagster import Definitions

from render_pipeline.maintenance.dead_runs import dead_run_sensor
from render_pipeline.maintenance.jobs import MAINTENANCE_JOBS
from render_pipeline.maintenance.schedules import SCHEDULES
from render_pipeline.maintenance.storage_usage import storage_usage


def maintenance_definitions() -> Definitions:
    """Every maintenance job and schedule, the storage-usage asset and the dead-run sensor."""
    return Definitions(assets=[storage_usage], jobs=MAINTENANCE_JOBS, schedules=SCHEDULES, sensors=[dead_run_sensor])
