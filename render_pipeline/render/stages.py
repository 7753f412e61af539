"""What travels between the render ops: one typed item per render (or per decoded source),
holding small facts in memory and its images in the run's scratch directory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from render_pipeline import imaging
from render_pipeline.render.scratch import SpilledArray, SpilledBytes
from render_pipeline.store.renders import RenderTarget

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class RenderJob:
    """One (upload, style, preset) render in flight, with the time each stage took."""

    target: RenderTarget
    partition_key: str
    preset: imaging.SizePreset
    source: imaging.ImageInfo
    timings_ms: Mapping[str, float] = field(default_factory=dict)

    def timed(self, stage: str, ms: float) -> RenderJob:
        return replace(self, timings_ms={**self.timings_ms, stage: ms})


@dataclass(frozen=True)
class DecodedSource:
    """An upload decoded once for the presets (``jobs``) that share its draft scale."""

    jobs: tuple[RenderJob, ...]
    image: SpilledArray  # HxWx3 RGB or HxW luma, as ``imaging.decode`` produced it


@dataclass(frozen=True)
class Fitted:
    job: RenderJob
    pixels: SpilledArray  # exactly the preset's size


@dataclass(frozen=True)
class Quantized:
    job: RenderJob
    pixels: SpilledArray
    labels: SpilledArray  # one byte a pixel
    palette: tuple[RGB, ...]


@dataclass(frozen=True)
class Composed:
    job: RenderJob
    indices: SpilledArray  # the output palette image's pixels
    palette: tuple[RGB, ...]  # the colours drawn


@dataclass(frozen=True)
class Encoded:
    job: RenderJob
    output_png: SpilledBytes
    preview_jpeg: SpilledBytes
    output_sha256: str
    pixels_sha256: str
    palette: tuple[RGB, ...]
