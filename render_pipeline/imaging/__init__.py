"""Pure image engine: decode -> preprocess -> quantize -> compose -> encode/preview.

No Dagster, storage or database here; the orchestration layer runs these stages as ops.
"""

from .decode import DecodedImage, DecodeLimits, ImageInfo, decode, probe
from .encode import EncodedOutputs, encode_outputs, encode_png, make_preview, pixel_sha256
from .errors import ImageRejected
from .preprocess import preprocess
from .presets import DEFAULT_PRESET_IDS, PRESETS, SizePreset, get_preset
from .quantize import Quantization
from .render import ENGINE_VERSION, RenderResult, render, render_metadata
from .styles import STYLES, StyleSpec, get_style

__all__ = [
    "DEFAULT_PRESET_IDS",
    "ENGINE_VERSION",
    "PRESETS",
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
    "encode_outputs",
    "encode_png",
    "get_preset",
    "get_style",
    "make_preview",
    "pixel_sha256",
    "preprocess",
    "probe",
    "render",
    "render_metadata",
]
