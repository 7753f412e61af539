"""The render slice: how an upload becomes renders.

`sensors` notices new objects under uploads/ and requests ranged runs of `job` (`requeues`
does the same for requeued renders); `uploads` validates each partition; `assets` are one
graph per style whose `ops` render every upload of the run (`targets` picks its renders)
stage by stage, handing typed `stages` items along (`handoff`) with their images in the run's
`scratch` directory; `events` reports each partition to Dagster on its own, with the UI
`metadata` it shows.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import Definitions

from render_pipeline import imaging
from render_pipeline.render.assets import build_render_asset
from render_pipeline.render.handoff import HANDOFF_IO_MANAGER, render_handoff_io_manager
from render_pipeline.render.job import render_uploads_job
from render_pipeline.render.requeues import requeue_sensor
from render_pipeline.render.scratch import RenderScratch
from render_pipeline.render.sensors import (
    build_uploads_sensor,
    render_run_canceled_sensor,
    render_run_failure_sensor,
)
from render_pipeline.render.uploads import build_uploads_asset


def render_definitions(styles: Sequence[str], presets: Sequence[str]) -> Definitions:
    """Every style's render asset, the uploads asset, the render job and its sensors.
    ``styles`` are those the uploads sensor renders; ``presets`` the default sizes."""
    return Definitions(
        assets=[build_uploads_asset(presets), *(build_render_asset(imaging.get_style(s), presets) for s in imaging.STYLES)],
        jobs=[render_uploads_job],
        sensors=[build_uploads_sensor(styles), requeue_sensor, render_run_failure_sensor, render_run_canceled_sensor],
        resources={HANDOFF_IO_MANAGER: render_handoff_io_manager, "scratch": RenderScratch()},
    )
