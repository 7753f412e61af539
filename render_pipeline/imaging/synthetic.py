"""Deterministic photo-like test images (soft light, out-of-focus blobs, hard edges, grain).

Used by tests, the benchmark and demos.  Everything is integer hashing, scalar libm
trigonometry, IEEE float arithmetic and bit-exact OpenCV calls (integer drawing, 8-bit
fixed-point GaussianBlur, INTER_LINEAR_EXACT), so the same arguments give the same pixels on
any numpy version and any x86-64 CPU: no call here takes a SIMD- or IPP-dependent path.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

_DRAFT = 512  # soft content is drawn at this long side, then upscaled


def photo_like(width: int, height: int, *, seed: int = 0) -> np.ndarray:
    """HxWx3 uint8 RGB: a lit backdrop, soft blobs, hard-edged shapes and sensor grain."""
    rand = _Stream(seed)
    scale = _DRAFT / max(width, height)
    small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
    gy, gx = np.mgrid[0:small_h, 0:small_w].astype(np.float32) * np.float32(64 / _DRAFT)
    soft = np.empty((small_h, small_w, 3), np.float32)
    for c in range(3):  # backdrop: slow waves of colour, like light on a wall or sky
        # separable, so sin/cos run on one row / one column, through scalar libm: numpy's
        # float32 np.sin/np.cos are SIMD kernels whose last bit depends on the CPU.
        wave_x = _libm(math.sin, gx[0] / (6 + 6 * rand()) + 6 * rand())
        wave_y = _libm(math.cos, gy[:, 0] / (5 + 5 * rand()) + 6 * rand())
        soft[..., c] = 120 + 70 * wave_x[None, :] * wave_y[:, None]
    short = min(small_w, small_h)
    for _ in range(7):  # out-of-focus objects
        mask = np.zeros((small_h, small_w), np.uint8)
        centre = (int(rand() * small_w), int(rand() * small_h))
        axes = (max(1, int(short * (0.08 + 0.3 * rand()))), max(1, int(short * (0.08 + 0.3 * rand()))))
        cv2.ellipse(mask, centre, axes, rand() * 180, 0, 360, 255, -1)
        # 8-bit GaussianBlur is OpenCV's bit-exact fixed-point path; the float one is not
        mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, short * 0.02))[..., None] / np.float32(255)
        soft = soft * (1 - mask) + np.float32([rand() * 255, rand() * 255, rand() * 255]) * mask
    # INTER_CUBIC on 8-bit goes to IPP, whose result depends on the CPU's IPP code path
    image = cv2.resize(np.clip(soft, 0, 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR_EXACT)
    for _ in range(4):  # in-focus shapes with hard edges and their own shading
        points = np.array([[rand() * width, rand() * height] for _ in range(5)], np.int32)
        colour = tuple(int(40 + rand() * 200) for _ in range(3))
        cv2.fillPoly(image, [cv2.convexHull(points)], colour, cv2.LINE_AA)
    return with_grain(image, seed=seed)


def with_grain(image: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """HxWx3 uint8 ``image`` plus deterministic sensor-like grain (about +-10 levels)."""
    height, width = image.shape[:2]
    y, x = np.ogrid[0:height, 0:width]
    h = (x.astype(np.uint32) * np.uint32(73856093)) ^ (y.astype(np.uint32) * np.uint32(19349663))
    h = (h ^ np.uint32(seed * 83492791 & 0xFFFFFFFF) ^ (h >> np.uint32(13))) * np.uint32(1274126177)
    grain = ((h >> np.uint32(24)).astype(np.int16) - 128) // 12
    return cv2.add(image, np.repeat(grain[..., None], 3, axis=2), dtype=cv2.CV_8U)


def _libm(function, values: np.ndarray) -> np.ndarray:
    """``function`` (a ``math`` one) of each float32 value, rounded back to float32."""
    return np.array([function(float(v)) for v in values], np.float64).astype(np.float32)


class _Stream:
    """A tiny deterministic number stream in [0, 1) from a seed (not a random generator)."""

    def __init__(self, seed: int) -> None:
        self.state = seed * 7919

    def __call__(self) -> float:
        self.state += 1
        return (math.sin(self.state * 12.9898 + 78.233) * 43758.5453) % 1.0
