"""Driving the Dagster side in tests the way the daemon does: evaluate a sensor against a real
instance, add the partitions it asks for, and execute each run request it returns."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Sequence

import numpy as np
from dagster import DagsterInstance, Definitions, RunRequest, SensorResult, build_sensor_context
from PIL import Image

from render_pipeline.definitions import build_definitions
from render_pipeline.imaging.synthetic import photo_like
from render_pipeline.keys import asset_id_for
from render_pipeline.resources.database import PostgresResource
from render_pipeline.settings import load_settings

TEST_PRESETS = ("play-feature", "square-1024")
TEST_RETRY_SECONDS = "1"


def jpeg_bytes(width: int = 320, height: int = 240, *, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo_like(width, height, seed=seed)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def png_bytes(width: int = 200, height: int = 160, *, seed: int = 1) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(photo_like(width, height, seed=seed))).save(buffer, "PNG")
    return buffer.getvalue()


def definitions_for(env: dict[str, str], *, presets: Sequence[str] = TEST_PRESETS) -> Definitions:
    """The project's definitions for ``env``.  A failing read or write is retried for
    TEST_RETRY_SECONDS unless ``env`` says otherwise: the production budget (45 s) would make
    every permanent-failure scenario wait it out."""
    return build_definitions(load_settings({"MINIO_RETRY_SECONDS": TEST_RETRY_SECONDS, **env,
                                            "RENDER_DEFAULT_PRESETS": ",".join(presets)}))


def tick(defs: Definitions, instance: DagsterInstance, sensor_name: str, cursor: str | None = None) -> SensorResult:
    """One sensor evaluation, with the partitions it requests added as the daemon would."""
    sensor = defs.resolve_sensor_def(sensor_name)
    with build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
    ) as context:
        result = sensor(context)
    if not isinstance(result, SensorResult):
        return SensorResult(skip_reason=getattr(result, "skip_message", None), cursor=context.cursor)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def execute(defs: Definitions, instance: DagsterInstance, request: RunRequest, *, job_name: str = "render_uploads",
            run_id: str | None = None):
    """Run one run request in this process against ``instance`` (run keys deduplicated)."""
    tags = dict(request.tags)
    if request.run_key:
        tags["dagster/run_key"] = request.run_key
    job = defs.resolve_job_def(job_name)
    return job.execute_in_process(
        instance=instance,
        run_config=request.run_config or None,
        tags=tags,
        partition_key=request.partition_key,
        asset_selection=list(request.asset_selection) if request.asset_selection else None,
        raise_on_error=False,
        run_id=run_id,
    )


def run_all(defs: Definitions, instance: DagsterInstance, result: SensorResult) -> list:
    """Execute every run request of a sensor tick; each must succeed (the failing one's last
    event is the assertion's message)."""
    outcomes = [execute(defs, instance, request) for request in result.run_requests or []]
    assert all(outcome.success for outcome in outcomes), [o.all_events[-1] for o in outcomes if not o.success]
    return outcomes


def renders_of_upload(database: PostgresResource, object_key: str) -> list[dict]:
    """Every column of the upload's render rows, by style and preset."""
    with database.connection() as conn:
        return conn.execute(
            "SELECT * FROM renders WHERE asset_id = %s ORDER BY style_id, size_preset_id",
            (asset_id_for(object_key),),
        ).fetchall()


def inline_jpeg(markdown: str) -> Image.Image:
    """The first data-URI JPEG in a metadata markdown value, as the UI shows it."""
    encoded = re.search(r"\(data:image/jpeg;base64,([A-Za-z0-9+/=]+)\)", markdown).group(1)
    with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
        assert image.format == "JPEG"
        return image.convert("RGB")
