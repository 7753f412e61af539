"""Output encoding: PNG for the render, a small JPEG preview, and a pixel hash."""

from __future__ import annotations

import hashlib
import io

from PIL import Image, PngImagePlugin

PNG_COMPRESS_LEVEL = 1  # fastest for palette images; see docs/engine.md for the measurement
PREVIEW_LONG_SIDE = 512
PREVIEW_QUALITY = 85


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes tagged sRGB and nothing else (no ICC, EXIF, text or time chunks)."""
    srgb = PngImagePlugin.PngInfo()
    srgb.add(b"sRGB", b"\x00")  # rendering intent: perceptual
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL, pnginfo=srgb, icc_profile=None)
    return buffer.getvalue()


def make_preview(image: Image.Image) -> bytes:
    """Baseline JPEG, long side 512 px, quality 85, no metadata."""
    rgb = image.convert("RGB")
    scale = PREVIEW_LONG_SIDE / max(rgb.size)
    if scale < 1:
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=1.0)  # box-reduce, then a small bilinear step
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG", quality=PREVIEW_QUALITY, icc_profile=None, exif=b"")
    return buffer.getvalue()


def pixel_sha256(image: Image.Image) -> str:
    """sha256 of the pixels as stored (mode, size, palette, raw bytes), not of the PNG file.

    Pins the look independently of the zlib build that shapes the PNG bytes.
    """
    digest = hashlib.sha256(f"{image.mode} {image.width}x{image.height}:".encode())
    if image.mode == "P":
        digest.update(bytes(image.getpalette() or []))
    digest.update(image.tobytes())
    return digest.hexdigest()
