"""Fit a decoded image to a size preset: exact output size, centre crop or pad."""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

from .decode import WHITE, DecodedImage, RGB
from .presets import SizePreset


def preprocess(
    image: DecodedImage | Image.Image, preset: SizePreset, *, background: RGB = WHITE
) -> np.ndarray:
    """Return ``preset.height x preset.width x 3`` uint8 RGB pixels (``H x W`` for an ``L`` image).

    ``cover`` scales to fill and centre-crops; ``contain`` scales to fit and pads with
    ``background``.  Only the source region that is kept is touched: Pillow's box
    ``reduce`` shrinks it by the largest whole factor (cheap, area-averaged), then OpenCV's
    bilinear resize covers the remaining factor, which is below 2 so nothing aliases.
    """
    source = image.image if isinstance(image, DecodedImage) else image
    if source.mode not in ("RGB", "L"):
        source = source.convert("RGB")
    scale = preset.scale_for(source.width, source.height)
    out_w = preset.width if preset.fit == "cover" else max(1, round(source.width * scale))
    out_h = preset.height if preset.fit == "cover" else max(1, round(source.height * scale))
    box = _centre_box(source.size, (out_w / scale, out_h / scale))
    factor = max(1, math.floor(1 / scale))
    region = source.reduce(factor, box=box) if factor > 1 else source.crop(box)
    pixels = np.asarray(region)
    if pixels.shape[:2] != (out_h, out_w):
        pixels = cv2.resize(pixels, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    if (out_w, out_h) == (preset.width, preset.height):
        return np.ascontiguousarray(pixels)
    canvas = np.empty((preset.height, preset.width, *pixels.shape[2:]), np.uint8)
    canvas[:] = background if pixels.ndim == 3 else _luma(background)
    top, left = (preset.height - out_h) // 2, (preset.width - out_w) // 2
    canvas[top : top + out_h, left : left + out_w] = pixels
    return canvas


def _luma(colour: RGB) -> int:
    """``colour``'s grey value, as Pillow converts RGB to ``L`` (the grey decode path)."""
    return Image.new("RGB", (1, 1), colour).convert("L").getpixel((0, 0))


def _centre_box(size: tuple[int, int], crop: tuple[float, float]) -> tuple[int, int, int, int]:
    """Integer source box of (at most) ``crop`` size centred in ``size``."""
    width, height = size
    crop_w, crop_h = min(width, max(1, round(crop[0]))), min(height, max(1, round(crop[1])))
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return left, top, left + crop_w, top + crop_h
