"""Pure image engine: decode -> preprocess -> quantize -> compose -> encode/preview.

No Dagster, storage or database here; the orchestration layer runs these stages as ops.
"""

from .decode import DecodedImage, DecodeLimits, ImageInfo, decode, decode_for_presets, draft_groups, draft_scale, probe, read_info
from .encode import EncodedOutputs, encode_outputs, encode_png, make_preview, pixel_sha256
from .errors import ImageRejected, too_large
from .preprocess import preprocess
from .presets import DEFAULT_PRESET_IDS, PRESETS, SizePreset, get_preset
from .quantize import Quantization
from .render import ENGINE_VERSION, STAGES, RenderResult, drawn_palette, render, render_metadata, render_presets
from .styles import STYLES, StyleSpec, get_style

__all__ = [
    "DEFAULT_PRESET_IDS",
    "ENGINE_VERSION",
    "PRESETS",
    "STAGES",
    "STYLES",
    "DecodeLimits",
    "DecodedImage",
    "EncodedOutputs",
    "ImageInfo",
    "ImageRejected",
    "Quantization",
    "RenderResult",
    "SizePreset",
    "StyleSpec",
    "decode",
    "decode_for_presets",
    "draft_groups",
    "draft_scale",
    "drawn_palette",
    "encode_outputs",
    "encode_png",
    "get_preset",
    "get_style",
    "make_preview",
    "pixel_sha256",
    "preprocess",
    "probe",
    "read_info",
    "render",
    "render_metadata",
    "render_presets",
    "too_large",
]
