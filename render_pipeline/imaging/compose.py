"""The four pop-art looks, drawn on the quantized label plane as one palette image.

Working on labels (uint8 indices) instead of RGB keeps every step a cheap single-channel
OpenCV call and makes the output a ``P`` image, which also encodes to PNG fastest.
Sizes in configs are fractions of the output's short side, so a look is the same at
every preset.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
from PIL import Image

from .presets import SizePreset
from .quantize import Quantization, luminance

INK = (12, 12, 16)
Config = Mapping[str, Any]


def pop_poster(pixels: np.ndarray, quantization: Quantization, preset: SizePreset, config: Config) -> Image.Image:
    """Flat posterized regions in bold colours, ranked by luminance, with black ink outlines."""
    short = min(preset.width, preset.height)
    labels = _smooth(quantization.labels, _px(short, config["smoothing"]))
    colours = spread(config["palette"], len(quantization.palette))
    ink = _outline(labels, quantization.palette, width=_px(short, config["outline_width"]),
                   threshold=config["edge_threshold"], ink=len(colours))
    return _palette_image(cv2.max(labels, ink), [*colours, INK])


def halftone(pixels: np.ndarray, quantization: Quantization, preset: SizePreset, config: Config) -> Image.Image:
    """Ben-Day dots on a rotated screen over flat colour, with ink outlines.

    Within each region, dots of the next darker colour grow as the local tone darkens
    (dot area = how far the tone has moved towards the darker neighbour), so the dots
    carry the shading the flat colours drop.
    """
    short = min(preset.width, preset.height)
    labels = _smooth(quantization.labels, _px(short, config["smoothing"]))
    height, width = labels.shape
    cell = max(3.0, short / config["dot_cells"])
    box = max(1, round(cell))
    tone = cv2.blur(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY), (box, box))
    # threshold[level, tone]: a 2-D lookup done by cv2.remap at integral coordinates (exact)
    threshold = cv2.remap(_dot_thresholds(quantization.palette), tone.astype(np.float32),
                          labels.astype(np.float32), cv2.INTER_NEAREST)
    dots = (_screen(height, width, cell, config["angle"]) < threshold).view(np.uint8)
    shaded = labels - dots  # region 0 has no darker neighbour; its threshold row is all zero
    colours = spread(config["palette"], len(quantization.palette))
    ink = _outline(labels, quantization.palette, width=_px(short, config["outline_width"]),
                   threshold=config["edge_threshold"], ink=len(colours))
    return _palette_image(cv2.max(shaded, ink), [*colours, INK])


def warhol_grid(pixels: np.ndarray, quantization: Quantization, preset: SizePreset, config: Config) -> Image.Image:
    """A rows x cols grid of the posterized image, each panel in its own palette."""
    rows, cols, k = config["rows"], config["cols"], len(quantization.palette)
    gutter = _px(min(preset.width, preset.height), config["gutter"])
    panel_w = max(1, (preset.width - (cols + 1) * gutter) // cols)
    panel_h = max(1, (preset.height - (rows + 1) * gutter) // rows)
    labels = _smooth(quantization.labels, _px(min(preset.width, preset.height), config["smoothing"]))
    crop = labels[_centre_slices(labels.shape, panel_w / panel_h)]
    panel = cv2.resize(crop, (panel_w, panel_h), interpolation=cv2.INTER_NEAREST)
    ink_index, gutter_index = rows * cols * k, rows * cols * k + 1
    ink = _outline(panel, quantization.palette, width=_px(min(panel_w, panel_h), config["outline_width"]),
                   threshold=config["edge_threshold"], ink=ink_index)
    canvas = np.full((preset.height, preset.width), gutter_index, np.uint8)
    colours: list[tuple[int, int, int]] = []
    for n in range(rows * cols):
        row, col = divmod(n, cols)
        top, left = gutter + row * (panel_h + gutter), gutter + col * (panel_w + gutter)
        canvas[top : top + panel_h, left : left + panel_w] = cv2.max(panel + n * k, ink)
        colours += spread(config["palettes"][n % len(config["palettes"])], k)
    return _palette_image(canvas, [*colours, INK, hex_rgb(config["gutter_colour"])])


def duotone(pixels: np.ndarray, quantization: Quantization, preset: SizePreset, config: Config) -> Image.Image:
    """Grey levels mapped onto the line between two colours."""
    dark, light = np.array(hex_rgb(config["dark"]), float), np.array(hex_rgb(config["light"]), float)
    t = quantization.palette[:, :1].astype(float) / 255
    colours = np.rint(dark + (light - dark) * t).astype(np.uint8)
    return _palette_image(quantization.labels, [tuple(map(int, c)) for c in colours])


def spread(colours: Sequence[str], n: int) -> list[tuple[int, int, int]]:
    """Pick ``n`` of the dark-to-light ``colours`` for ``n`` luminance-ranked clusters."""
    if n == 1:
        return [hex_rgb(colours[len(colours) // 2])]
    return [hex_rgb(colours[round(i * (len(colours) - 1) / (n - 1))]) for i in range(n)]


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _px(short_side: int, fraction: float) -> int:
    return round(short_side * fraction)


def _smooth(labels: np.ndarray, size: int) -> np.ndarray:
    """Median-filter the labels (luminance-ordered, so the median is meaningful): no speckle."""
    size = size | 1
    return cv2.medianBlur(labels, size) if size >= 3 else labels


def _outline(labels: np.ndarray, palette: np.ndarray, *, width: int, threshold: int, ink: int) -> np.ndarray:
    """``width``-px ink lines between regions whose colours differ: ``ink`` on a line, else 0.

    Within the line width, the darkest and lightest labels present (dilate / erode) form a
    pair; the pair is inked when some 8-bit CIELAB channel of their colours differs by at
    least ``threshold``, so hue boundaries count as much as light/dark ones.  ``ink`` is the
    ink's palette index, above every label, so ``cv2.max(labels, lines)`` draws the lines.
    """
    if width < 1:
        return np.zeros(labels.shape, np.uint8)
    lab = cv2.cvtColor(palette[None], cv2.COLOR_RGB2Lab)[0].astype(int)
    far = np.abs(lab[:, None, :] - lab[None, :, :]).max(axis=2) >= max(1, threshold)
    table = np.zeros(256, np.uint8)
    high, low = np.nonzero(far)
    table[high * 16 + low] = ink
    kernel = np.ones((max(2, width), max(2, width)), np.uint8)
    pair = cv2.addWeighted(cv2.dilate(labels, kernel), 16, cv2.erode(labels, kernel), 1, 0)
    return cv2.LUT(pair, table)


def _dot_thresholds(palette: np.ndarray) -> np.ndarray:
    """levels x 256 (level, tone) -> screen threshold table; row 0 (darkest) never dots."""
    luma = luminance(palette) / 1000
    edges = np.concatenate([[0.0], (luma[1:] + luma[:-1]) / 2, [255.0]])
    tone = np.arange(256, dtype=float)
    table = np.zeros((len(palette), 256), np.uint8)
    for level in range(1, len(palette)):
        top, bottom = edges[level + 1], edges[level]
        coverage = np.clip((top - tone) / max(1e-9, top - bottom), 0, 0.9)
        # dot radius for that area on a unit cell, on the screen's 0..255 scale (255 = cell corner)
        table[level] = np.rint(np.sqrt(coverage / math.pi) / math.sqrt(0.5) * 255).clip(0, 255)
    return table


@functools.lru_cache(maxsize=4)
def _screen(height: int, width: int, cell: float, angle: float) -> np.ndarray:
    """Distance to the nearest dot centre of a rotated square lattice, 0..255 (cached, read-only)."""
    theta = math.radians(angle)
    cos, sin = np.float32(math.cos(theta) / cell), np.float32(math.sin(theta) / cell)
    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]
    u = x * cos + y * sin
    v = y * cos - x * sin
    u -= np.rint(u)
    v -= np.rint(v)
    # not cv2.magnitude: IPP's kernel gives CPU- and even alignment-dependent last bits;
    # numpy's float32 multiply, add and sqrt are each correctly rounded on every CPU
    u *= u
    v *= v
    u += v
    distance = np.sqrt(u, out=u)
    distance *= np.float32(255 / math.sqrt(0.5))
    screen = np.minimum(distance, 255).astype(np.uint8)
    screen.setflags(write=False)
    return screen


def _centre_slices(shape: tuple[int, ...], aspect: float) -> tuple[slice, slice]:
    height, width = shape[:2]
    if width / height > aspect:
        keep = max(1, round(height * aspect))
        return slice(None), slice((width - keep) // 2, (width - keep) // 2 + keep)
    keep = max(1, round(width / aspect))
    return slice((height - keep) // 2, (height - keep) // 2 + keep), slice(None)


def _palette_image(indices: np.ndarray, colours: Sequence[tuple[int, int, int]]) -> Image.Image:
    image = Image.fromarray(np.ascontiguousarray(indices), "L")
    image.putpalette([channel for colour in colours for channel in colour], "RGB")
    return image
