"""The one Definitions object: assets, jobs, sensors and schedules with the resources the
environment asks for (embedded PostgreSQL and a local store by default, MinIO/S3 when set)."""

from __future__ import annotations

from dagster import Definitions

from render_pipeline.resources.factory import dagster_resources
from render_pipeline.settings import load_settings

settings = load_settings()

defs = Definitions(
    resources=dagster_resources(settings),
)
