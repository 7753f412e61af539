"""The maintenance slice as one Definitions: the `storage_usage` asset, a job per procedure
and their schedules (resources come from `render_pipeline.definitions`)."""

from __future__ import annotations

from dagster import Definitions

from render_pipeline.maintenance.jobs import MAINTENANCE_JOBS
from render_pipeline.maintenance.schedules import SCHEDULES
from render_pipeline.maintenance.storage_usage import storage_usage


def maintenance_definitions() -> Definitions:
    """Every maintenance job and schedule, and the storage-usage asset."""
    return Definitions(assets=[storage_usage], jobs=MAINTENANCE_JOBS, schedules=SCHEDULES)
