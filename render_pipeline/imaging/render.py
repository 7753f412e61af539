"""The stages composed: one source rendered at several presets, exactly as the render ops
run them (``decode_for_presets`` → ``preprocess`` → quantize → compose → ``encode_outputs``)."""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import PIL
from PIL import Image

from .decode import DecodedImage, DecodeLimits, ImageInfo, decode_for_presets
from .encode import encode_outputs
from .preprocess import preprocess
from .presets import SizePreset, get_preset
from .styles import StyleSpec, get_style

ENGINE_VERSION = "1.0.0"
# Stage names, as timed in ``render_metadata["timings_ms"]`` and as the render ops are named.
STAGES = ("decode", "preprocess", "quantize", "compose", "preview")


@dataclass(frozen=True)
class RenderResult:
    output_png: bytes
    preview_jpeg: bytes
    metadata: dict[str, Any]


def render(
    data: bytes,
    style: str,
    preset: str,
    config: Mapping[str, Any] | None = None,
    *,
    limits: DecodeLimits = DecodeLimits(),
) -> RenderResult:
    """Render ``data`` in ``style`` at ``preset``: the runbook's "reproduce locally" call.

    Raises ``ImageRejected`` for refused input, ``LookupError`` for an unknown style or
    preset and ``ValueError`` for a bad config.
    """
    return next(render_presets(data, style, [preset], config, limits=limits))


def render_presets(
    data: bytes,
    style: str,
    presets: Sequence[str],
    config: Mapping[str, Any] | None = None,
    *,
    limits: DecodeLimits = DecodeLimits(),
) -> Iterator[RenderResult]:
    """Render ``data`` in ``style`` at each preset, one result at a time, presets that share
    a decode together.

    The source is decoded once per distinct JPEG draft scale (``decode_for_presets``), and
    each result is byte-identical to ``render`` of that preset alone; a shared decode's
    time is reported in each of its renders.
    """
    spec, sizes = get_style(style), [get_preset(p) for p in presets]
    settings = spec.validate_config(config)
    groups = decode_for_presets(data, sizes, limits=limits, grey=not spec.needs_colour)
    while True:
        started = time.perf_counter()
        decoded, group = next(groups, (None, ()))
        if decoded is None:
            return
        decode_ms = (time.perf_counter() - started) * 1000
        for size in group:
            yield _render_decoded(spec, settings, decoded, size, decode_ms)


def _render_decoded(
    spec: StyleSpec, settings: Mapping[str, Any], decoded: DecodedImage, size: SizePreset, decode_ms: float
) -> RenderResult:
    timings: dict[str, float] = {"decode": decode_ms}
    with _timed(timings, "preprocess"):
        pixels = preprocess(decoded, size)
    with _timed(timings, "quantize"):
        quantization = spec.quantize(pixels, settings)
    with _timed(timings, "compose"):
        image = spec.compose(pixels, quantization, size, settings)
    with _timed(timings, "preview"):
        encoded = encode_outputs(image)
    metadata = render_metadata(
        spec, size, settings, info=decoded.info, palette=drawn_palette(image),
        pixels_sha256=encoded.pixels_sha256, timings_ms=timings,
    )
    return RenderResult(output_png=encoded.png, preview_jpeg=encoded.preview_jpeg, metadata=metadata)


def render_metadata(
    spec: StyleSpec,
    preset: SizePreset,
    config: Mapping[str, Any],
    *,
    info: ImageInfo,
    palette: Sequence[tuple[int, int, int]],
    pixels_sha256: str,
    timings_ms: Mapping[str, float],
) -> dict[str, Any]:
    """The JSON-serialisable record stored with a render (``renders.render_metadata``)."""
    return {
        "engine_version": ENGINE_VERSION,
        "style": spec.id,
        "style_version": spec.version,
        "config": dict(config),
        "preset": preset.id,
        "width": preset.width,
        "height": preset.height,
        "fit": preset.fit,
        "palette": ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in palette],
        "pixels_sha256": pixels_sha256,
        "source": info.as_dict(),
        "timings_ms": {stage: round(ms, 2) for stage, ms in timings_ms.items()},
        "versions": {
            "pillow": PIL.__version__, "numpy": np.__version__, "opencv": cv2.__version__,
            "zlib": zlib.ZLIB_RUNTIME_VERSION,
        },
    }


def drawn_palette(image: Image.Image) -> list[tuple[int, int, int]]:
    """The colours of a palette image, in index order: what the render actually shows."""
    flat = image.getpalette() or []
    return [tuple(flat[i : i + 3]) for i in range(0, len(flat), 3)]


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[stage] = (time.perf_counter() - start) * 1000
