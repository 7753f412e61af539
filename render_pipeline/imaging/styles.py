"""The style registry: versioned, frozen specs with validated configs.

A style's ``version`` must change whenever its output for the same input changes (the
golden-hash tests fail until it does).  Its ``default_config`` is mirrored as
``styles.algorithm_config`` by ``sql/seed_styles.sql``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from PIL import Image

from . import compose
from .presets import SizePreset
from .quantize import Quantization, luminance_levels, quantize

Config = Mapping[str, Any]
_HEX = re.compile(r"#[0-9a-fA-F]{6}")


@dataclass(frozen=True)
class Param:
    """One config key: its default and a checker returning the normalised value."""

    default: Any
    check: Callable[[Any], Any]


@dataclass(frozen=True)
class StyleSpec:
    """A style: metadata, config schema and its two stage functions.

    ``needs_colour=False`` means the style reads luma only, so its source is decoded grey.
    """

    id: str
    name: str
    description: str
    version: int
    params: Mapping[str, Param]
    quantize: Callable[[np.ndarray, Config], Quantization]
    compose: Callable[[np.ndarray, Quantization, SizePreset, Config], Image.Image]
    needs_colour: bool = True

    @property
    def default_config(self) -> dict[str, Any]:
        return {key: copy.deepcopy(param.default) for key, param in self.params.items()}

    def validate_config(self, config: Mapping[str, Any] | None) -> dict[str, Any]:
        """Merge ``config`` over the defaults; unknown keys, nulls and bad values raise ``ValueError``."""
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise ValueError(f"style {self.id!r}: config must be a JSON object, got {type(config).__name__}")
        unknown = sorted(set(config) - set(self.params))
        if unknown:
            raise ValueError(
                f"style {self.id!r}: unknown config key {unknown[0]!r} (known: {', '.join(self.params)})"
            )
        merged = {}
        for key, param in self.params.items():
            value = config.get(key, param.default)
            if value is None:
                raise ValueError(f"style {self.id!r}: config key {key!r} is missing a value")
            try:
                merged[key] = param.check(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"style {self.id!r}: config key {key!r}: {exc}") from None
        return merged


def integer(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"expected {low}..{high}, got {value}")
        return value

    return check


def number(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"expected {low}..{high}, got {value}")
        return float(value)

    return check


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def colour(value: Any) -> str:
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise ValueError(f"expected a colour like '#ff3366', got {value!r}")
    return value.lower()


def colours(low: int, high: int) -> Callable[[Any], list[str]]:
    def check(value: Any) -> list[str]:
        if not isinstance(value, list) or not low <= len(value) <= high:
            raise ValueError(f"expected a list of {low}..{high} colours, got {value!r}")
        return [colour(item) for item in value]

    return check


def palettes(low: int, high: int, each: Callable[[Any], list[str]]) -> Callable[[Any], list[list[str]]]:
    def check(value: Any) -> list[list[str]]:
        if not isinstance(value, list) or not low <= len(value) <= high:
            raise ValueError(f"expected a list of {low}..{high} palettes, got {value!r}")
        return [each(item) for item in value]

    return check


def _kmeans(pixels: np.ndarray, config: Config) -> Quantization:
    return quantize(pixels, k=config["k"])


def _levels(pixels: np.ndarray, config: Config) -> Quantization:
    return luminance_levels(pixels, steps=config["steps"], stretch=config["stretch"])


def _steps(value: Any) -> int:
    steps = integer(0, 16)(value)
    if steps == 1:
        raise ValueError("expected 0 (continuous) or 2..16 steps, got 1")
    return steps


_OUTLINES = {
    "outline_width": Param(0.003, number(0.0, 0.02)),
    "edge_threshold": Param(24, integer(0, 255)),
    "smoothing": Param(0.004, number(0.0, 0.02)),
}

_ALL = (
    StyleSpec(
        id="pop-poster",
        name="Pop poster",
        description="k-means posterization mapped by luminance onto a bold pop palette, with black ink outlines.",
        version=3,
        params=MappingProxyType({
            "k": Param(6, integer(2, 8)),
            "palette": Param(["#1b1340", "#c2185b", "#ff5722", "#00b8d4", "#ffd600", "#fff8e1"], colours(2, 16)),
            **_OUTLINES,
        }),
        quantize=_kmeans,
        compose=compose.pop_poster,
    ),
    StyleSpec(
        id="halftone",
        name="Halftone",
        description="Ben-Day dots on a screen angle over flat posterized colour, with ink outlines.",
        version=3,
        params=MappingProxyType({
            "k": Param(5, integer(2, 8)),
            "palette": Param(["#14142b", "#1565c0", "#e53935", "#ffd54f", "#fffdf5"], colours(2, 16)),
            "dot_cells": Param(90, integer(10, 400)),
            "angle": Param(45.0, number(-90.0, 90.0)),
            **_OUTLINES,
        }),
        quantize=_kmeans,
        compose=compose.halftone,
    ),
    StyleSpec(
        id="warhol-grid",
        name="Warhol grid",
        description="A grid of the posterized image, each panel in a different pop palette.",
        version=3,
        params=MappingProxyType({
            "rows": Param(2, integer(1, 4)),
            "cols": Param(2, integer(1, 4)),
            "k": Param(4, integer(2, 8)),
            "palettes": Param(
                [
                    ["#1a1a1a", "#e6007e", "#ffde00", "#00a0e9"],
                    ["#1a1a1a", "#ff6f00", "#7cfc00", "#ff80ab"],
                    ["#1a1a1a", "#6a1b9a", "#00e5ff", "#ffea00"],
                    ["#1a1a1a", "#d50000", "#2962ff", "#fff176"],
                ],
                palettes(1, 16, colours(2, 8)),
            ),
            "gutter": Param(0.02, number(0.0, 0.1)),
            "gutter_colour": Param("#fafafa", colour),
            **_OUTLINES,
            "outline_width": Param(0.002, number(0.0, 0.02)),
        }),
        quantize=_kmeans,
        compose=compose.warhol_grid,
    ),
    StyleSpec(
        id="duotone",
        name="Duotone",
        description="Luminance mapped between two colours, with optional posterize steps.",
        version=3,
        params=MappingProxyType({
            "dark": Param("#1e0a5e", colour),
            "light": Param("#ff4d8d", colour),
            "steps": Param(4, _steps),
            "stretch": Param(True, boolean),
        }),
        quantize=_levels,
        compose=compose.duotone,
        needs_colour=False,
    ),
)


STYLES: Mapping[str, StyleSpec] = MappingProxyType({spec.id: spec for spec in _ALL})


def get_style(style_id: str) -> StyleSpec:
    """Look a style up by id; an unknown id is a ``LookupError`` listing the known ones."""
    try:
        return STYLES[style_id]
    except KeyError:
        raise LookupError(f"unknown style {style_id!r} (known: {', '.join(STYLES)})") from None
