"""Deterministic k-means colour quantization in CIELAB: fit on a sample, label every pixel."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

MAX_K = 8
# Distances are taken in OpenCV's 8-bit CIELAB (L scaled by 2.55, a/b offset by 128); the
# integer weights 1:6:6 (~ 1:2.55**2) make them proportional to CIELAB distances within 4 %.
_WEIGHTS = np.array([1.0, 6.0, 6.0], np.float32)
_GOLDEN = (math.sqrt(5) - 1) / 2

def _rgb565_cell_middles() -> np.ndarray:
    """256x256x3 uint8: the RGB middle of the colour cell each 16-bit RGB565 code stands for.

    Indexed by the code's two bytes as OpenCV lays them out, so ``cv2.cvtColor(pixels,
    COLOR_RGB2BGR565)`` gives every pixel's coordinates in this table directly.
    """
    codes = np.arange(1 << 16, dtype=np.uint16).view(np.uint8).reshape(256, 256, 2)
    corner = cv2.cvtColor(codes, cv2.COLOR_BGR5652RGB).astype(np.int32)
    middle = np.stack([(corner[..., 0] >> 3) * 8 + 4, (corner[..., 1] >> 2) * 4 + 2, (corner[..., 2] >> 3) * 8 + 4], -1)
    return np.minimum(middle, 255).astype(np.uint8)


_CELLS_LAB = cv2.cvtColor(_rgb565_cell_middles(), cv2.COLOR_RGB2Lab)  # cell middles in 8-bit Lab


@dataclass(frozen=True)
class Quantization:
    """``labels`` (HxW uint8) index ``palette`` (Kx3 uint8 RGB, sorted dark to light by luminance)."""

    labels: np.ndarray
    palette: np.ndarray


def quantize(
    pixels: np.ndarray,
    *,
    k: int,
    sample_size: int = 10_000,
    attempts: int = 2,
    seed: int = 0,
) -> Quantization:
    """Quantize HxWx3 uint8 RGB ``pixels`` to at most ``k`` colours, perceptually (CIELAB).

    k-means (OpenCV, k-means++ seeding, ``attempts`` runs, RNG seeded per call) runs on
    a fixed, evenly spread sample, never on every pixel; every pixel then gets the nearest
    centre through a colour-cell lookup (``nearest``).  Centres are rounded to uint8,
    de-duplicated and ordered by luminance, so the result is identical across runs,
    processes and thread counts.  Fewer distinct colours than ``k`` gives a shorter palette
    of exactly those colours.
    """
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be between 1 and {MAX_K}, got {k}")
    flat = pixels.reshape(-1, 3)
    sample = flat[sample_indices(len(flat), sample_size)]
    distinct = np.unique(_pack(sample))
    if len(distinct) <= k:
        palette = _unpack(distinct)
        centres = cv2.cvtColor(palette[None], cv2.COLOR_RGB2Lab)[0]
    else:
        scale = np.sqrt(_WEIGHTS / _WEIGHTS[1])  # k-means in (near) true CIELAB units
        points = cv2.cvtColor(sample[None], cv2.COLOR_RGB2Lab)[0].astype(np.float32) * scale
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, 30, 0.1)
        cv2.setRNGSeed(seed)
        _, _, fitted = cv2.kmeans(points, k, None, criteria, attempts, cv2.KMEANS_PP_CENTERS)
        centres = _unpack(np.unique(_pack(np.clip(np.rint(fitted / scale), 0, 255).astype(np.uint8))))
        palette = cv2.cvtColor(centres[None], cv2.COLOR_Lab2RGB)[0]
    order = np.lexsort((palette[:, 2], palette[:, 1], palette[:, 0], luminance(palette)))
    return Quantization(labels=nearest(pixels, centres[order]), palette=palette[order])


def sample_indices(n: int, size: int) -> np.ndarray:
    """``min(n, size)`` distinct indices spread over ``range(n)`` by a golden-ratio stride.

    Pure integer arithmetic, so the sample never depends on a random generator's version.
    """
    if n <= size:
        return np.arange(n)
    step = max(1, round(n * _GOLDEN))
    while math.gcd(step, n) != 1:
        step += 1
    return (np.arange(size, dtype=np.int64) * step) % n


def nearest(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Label every RGB pixel with the centre nearest (in Lab) to its RGB565 colour cell.

    The 65 536 cell middles are assigned exactly, then each pixel looks its cell up: one
    SIMD colour conversion to RGB565 and a ``cv2.remap`` (nearest-neighbour at integral
    coordinates, so exact) instead of a CIELAB conversion plus k distance passes over every
    pixel.  A pixel is at most 4 levels (green: 2) from its cell's middle, so only pixels
    near a Voronoi boundary can get the neighbouring centre: 94-99.5 % of pixels get their
    exact nearest centre and the error stays within 2 % of exact assignment (docs/engine.md).
    """
    table = assign(_CELLS_LAB, centres)
    coordinates = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR565).astype(np.int16)
    return cv2.remap(table, coordinates, None, cv2.INTER_NEAREST)


def assign(lab: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the exact nearest centre (weighted 8-bit Lab, ties to the lower index).

    argmin |p - c|^2 = argmin (|c|^2 - 2 p.c).  With integer p, c and weights, and at most
    8 centres, (score * 8 + index) is an integer below 2**24, so float32 arithmetic is exact
    and thread-count independent; the index rides in the low bits, so one ``cv2.transform``
    and a running minimum per centre yield the labels.
    """
    if len(centres) > MAX_K:
        raise ValueError(f"at most {MAX_K} centres, got {len(centres)}")
    source = lab.astype(np.float32)
    best: np.ndarray | None = None
    for index, centre in enumerate(centres.astype(np.float32)):
        row = np.append(-2 * MAX_K * _WEIGHTS * centre, MAX_K * float((_WEIGHTS * centre) @ centre) + index)
        score = cv2.transform(source, row.astype(np.float32)[None, :])
        best = score if best is None else cv2.min(best, score, dst=best)
    assert best is not None
    return (best.astype(np.int32) & (MAX_K - 1)).astype(np.uint8)


def luminance(colours: np.ndarray) -> np.ndarray:
    """Integer Rec. 601 luma x 1000 of Nx3 uint8 colours (exact, for ordering)."""
    c = colours.astype(np.int32)
    return 299 * c[:, 0] + 587 * c[:, 1] + 114 * c[:, 2]


def _pack(colours: np.ndarray) -> np.ndarray:
    c = colours.astype(np.uint32)
    return (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]


def _unpack(packed: np.ndarray) -> np.ndarray:
    return np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1).astype(np.uint8)


def luminance_levels(pixels: np.ndarray, *, steps: int, stretch: bool) -> Quantization:
    """Quantize by luma alone: labels are grey levels (``steps`` of them, or all 256 if 0).

    ``pixels`` is HxWx3 RGB or already HxW luma (a style that needs no colour decodes grey).

    ``stretch`` maps the 1st..99th luma percentile onto 0..255 first (auto-levels), read
    from an exact histogram so it is deterministic.
    """
    luma = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY) if pixels.ndim == 3 else pixels
    if stretch:
        cumulative = np.cumsum(np.bincount(luma.ravel(), minlength=256))
        low = int(np.searchsorted(cumulative, 0.01 * cumulative[-1]))
        high = int(np.searchsorted(cumulative, 0.99 * cumulative[-1]))
        if high > low:
            ramp = (np.arange(256) - low) * 255 / (high - low)
            luma = cv2.LUT(luma, np.clip(np.rint(ramp), 0, 255).astype(np.uint8))
    if steps == 0:
        grey = np.arange(256)
        return Quantization(labels=luma, palette=np.repeat(grey[:, None], 3, 1).astype(np.uint8))
    level = ((np.arange(256) * steps) >> 8).astype(np.uint8)
    grey = np.rint(np.arange(steps) * 255 / max(1, steps - 1))
    return Quantization(labels=cv2.LUT(luma, level), palette=np.repeat(grey[:, None], 3, 1).astype(np.uint8))
