"""``render``: the stage functions composed, exactly as the orchestration runs them."""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import cv2
import numpy as np
import PIL

from .decode import DecodeLimits, ImageInfo, decode
from .encode import encode_outputs
from .preprocess import preprocess
from .presets import SizePreset, get_preset
from .quantize import Quantization
from .styles import StyleSpec, get_style

ENGINE_VERSION = "1.0.0"


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
    spec, size = get_style(style), get_preset(preset)
    settings = spec.validate_config(config)
    timings: dict[str, float] = {}
    with _timed(timings, "decode"):
        decoded = decode(data, limits=limits, fit=(size,), grey=not spec.needs_colour)
    with _timed(timings, "preprocess"):
        pixels = preprocess(decoded, size)
    with _timed(timings, "quantize"):
        quantization = spec.quantize(pixels, settings)
    with _timed(timings, "compose"):
        image = spec.compose(pixels, quantization, size, settings)
    with _timed(timings, "encode"):
        encoded = encode_outputs(image)
    metadata = render_metadata(
        spec, size, settings, info=decoded.info, quantization=quantization,
        pixels_sha256=encoded.pixels_sha256, timings_ms=timings,
    )
    return RenderResult(output_png=encoded.png, preview_jpeg=encoded.preview_jpeg, metadata=metadata)


def render_metadata(
    spec: StyleSpec,
    preset: SizePreset,
    config: Mapping[str, Any],
    *,
    info: ImageInfo,
    quantization: Quantization,
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
        "palette": ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in quantization.palette],
        "pixels_sha256": pixels_sha256,
        "source": info.as_dict(),
        "timings_ms": {stage: round(ms, 2) for stage, ms in timings_ms.items()},
        "versions": {
            "pillow": PIL.__version__, "numpy": np.__version__, "opencv": cv2.__version__,
            "zlib": zlib.ZLIB_RUNTIME_VERSION,
        },
    }


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[stage] = (time.perf_counter() - start) * 1000
