"""Quantization: exact assignment, determinism, and quality against scikit-learn's KMeans."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from render_pipeline.imaging.quantize import assign, luminance, nearest, quantize, sample_indices
from render_pipeline.imaging.synthetic import photo_like


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of Nx3 sRGB values, written out independently of the engine."""
    c = rgb.astype(np.float64) / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124564, 0.3575761, 0.1804375],
                             [0.2126729, 0.7151522, 0.0721750],
                             [0.0193339, 0.1191920, 0.9503041]]).T
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def lab_error(pixels: np.ndarray, labels: np.ndarray, palette: np.ndarray) -> float:
    """Mean squared CIELAB distance between each pixel and the colour it was given."""
    flat = pixels.reshape(-1, 3)
    return float(((srgb_to_lab(flat) - srgb_to_lab(palette[labels.ravel()])) ** 2).sum(1).mean())


def test_assignment_is_the_exact_nearest_centre_in_weighted_8bit_lab() -> None:
    lab = cv2.cvtColor(photo_like(97, 61, seed=3), cv2.COLOR_RGB2Lab)
    centres = np.array([[0, 128, 128], [255, 128, 128], [120, 200, 90], [140, 60, 190], [128, 128, 128],
                        [60, 140, 100], [200, 100, 150], [90, 90, 90]], np.uint8)
    difference = lab[:, :, None, :].astype(int) - centres[None, None].astype(int)
    distances = (difference**2 * np.array([1, 6, 6])).sum(-1)
    assert np.array_equal(assign(lab, centres), distances.argmin(-1))


def test_cell_lookup_matches_exact_assignment_except_on_boundaries() -> None:
    pixels = photo_like(300, 200, seed=6)
    palette = quantize(pixels, k=6).palette
    centres = cv2.cvtColor(palette[None], cv2.COLOR_RGB2Lab)[0]
    exact = assign(cv2.cvtColor(pixels, cv2.COLOR_RGB2Lab), centres)
    looked_up = nearest(pixels, centres)
    assert (looked_up == exact).mean() > 0.98
    assert lab_error(pixels, looked_up, palette) <= 1.005 * lab_error(pixels, exact, palette)


def test_palette_is_luminance_ordered_uint8_and_labels_cover_it() -> None:
    result = quantize(photo_like(200, 150, seed=1), k=6)
    assert result.palette.dtype == np.uint8 and result.palette.shape == (6, 3)
    assert len(np.unique(result.labels)) == 6
    assert np.all(np.diff(luminance(result.palette)) >= 0)
    assert result.labels.dtype == np.uint8 and result.labels.shape == (150, 200)
    assert set(np.unique(result.labels)) <= set(range(6))


def test_fewer_colours_than_k_gives_a_shorter_exact_palette() -> None:
    pixels = np.zeros((40, 40, 3), np.uint8)
    pixels[:, 20:] = (250, 10, 10)
    result = quantize(pixels, k=6)
    assert result.palette.tolist() == [[0, 0, 0], [250, 10, 10]]
    assert quantize(np.full((1, 1, 3), 7, np.uint8), k=4).palette.tolist() == [[7, 7, 7]]


def test_same_input_same_result_and_no_global_random_state_used() -> None:
    pixels = photo_like(300, 200, seed=2)
    first = quantize(pixels, k=5)
    np.random.seed(12345)
    np.random.random(10)
    second = quantize(pixels, k=5)
    assert np.array_equal(first.palette, second.palette)
    assert np.array_equal(first.labels, second.labels)


def test_sample_indices_are_distinct_spread_and_fixed() -> None:
    indices = sample_indices(1_000_003, 20_000)
    assert len(np.unique(indices)) == 20_000
    assert np.histogram(indices, bins=10, range=(0, 1_000_003))[0].min() > 1_900  # evenly spread
    assert indices[:4].tolist() == [0, 618036, 236069, 854105]
    assert sample_indices(50, 100).tolist() == list(range(50))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("k", [4, 6])
def test_quality_is_within_5_percent_of_sklearn_kmeans_in_cielab(seed: int, k: int) -> None:
    pixels = photo_like(400, 300, seed=seed)  # 120k pixels: the 10k sample is a real subsample
    ours = quantize(pixels, k=k)
    with threadpool_limits(1):
        reference = KMeans(k, n_init=1, random_state=0).fit(pixels.reshape(-1, 3).astype(np.float64))
    centres = np.clip(np.rint(reference.cluster_centers_), 0, 255).astype(np.uint8)
    baseline = lab_error(pixels, reference.labels_, centres)
    assert lab_error(pixels, ours.labels, ours.palette) <= 1.05 * baseline
