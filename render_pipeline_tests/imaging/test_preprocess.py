"""Preprocess: exact preset sizes, centred cover crop, contain padding, orientation of content."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from render_pipeline.imaging import PRESETS, SizePreset, decode, preprocess

from .inputs import encoded


def _quadrants(width: int, height: int) -> Image.Image:
    """Red top-left, green top-right, blue bottom-left, white bottom-right."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 2, : width // 2] = (255, 0, 0)
    pixels[: height // 2, width // 2 :] = (0, 255, 0)
    pixels[height // 2 :, : width // 2] = (0, 0, 255)
    pixels[height // 2 :, width // 2 :] = (255, 255, 255)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("preset", list(PRESETS.values()), ids=list(PRESETS))
@pytest.mark.parametrize("source", [(4000, 3000), (300, 500), (1, 1), (5000, 40)])
def test_every_preset_gets_its_exact_size(preset: SizePreset, source: tuple[int, int]) -> None:
    pixels = preprocess(_quadrants(*source), preset)
    assert pixels.shape == (preset.height, preset.width, 3) and pixels.dtype == np.uint8


def test_cover_crops_the_centre_and_keeps_orientation() -> None:
    pixels = preprocess(_quadrants(3000, 2000), SizePreset("t", "t", "generic", 400, 400, "cover"))
    assert tuple(pixels[10, 10]) == (255, 0, 0) and tuple(pixels[10, 390]) == (0, 255, 0)
    assert tuple(pixels[390, 10]) == (0, 0, 255) and tuple(pixels[390, 390]) == (255, 255, 255)


def test_contain_pads_with_the_background() -> None:
    preset = SizePreset("t", "t", "generic", 400, 200, "contain")
    pixels = preprocess(_quadrants(1000, 1000), preset, background=(9, 8, 7))
    assert tuple(pixels[100, 50]) == (9, 8, 7) and tuple(pixels[100, 350]) == (9, 8, 7)
    assert tuple(pixels[10, 110]) == (255, 0, 0) and tuple(pixels[190, 290]) == (255, 255, 255)


def test_reduced_jpeg_decode_gives_the_same_picture() -> None:
    data = encoded(_quadrants(3000, 4000), "JPEG", quality=95)
    preset = PRESETS["square-1024"]
    full = preprocess(decode(data), preset).astype(int)
    drafted = decode(data, fit=preset)
    assert drafted.scale == 0.5
    assert np.abs(preprocess(drafted, preset).astype(int) - full).mean() < 2


def test_grey_images_stay_grey_and_pad_with_the_background_luma() -> None:
    grey = Image.new("L", (400, 100), 10)
    pixels = preprocess(grey, PRESETS["play-feature"], background=(255, 0, 0))  # contain: 1024x256 in 1024x500
    assert pixels.shape == (500, 1024)
    assert pixels[250, 512] == 10 and pixels[0, 0] == 76  # Pillow's luma of pure red
