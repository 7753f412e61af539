"""Style and preset registries, config validation, and what each look actually draws."""

from __future__ import annotations

import json

import numpy as np
import pytest

from render_pipeline.imaging import DEFAULT_PRESET_IDS, PRESETS, STYLES, get_preset, get_style, preprocess
from render_pipeline.imaging.synthetic import photo_like
from PIL import Image

from .golden import STYLE_VERSIONS


def test_registries() -> None:
    assert list(STYLES) == ["pop-poster", "halftone", "warhol-grid", "duotone"]
    assert set(DEFAULT_PRESET_IDS) <= set(PRESETS)
    assert {(p.width, p.height) for p in PRESETS.values()} >= {(1320, 2868), (1290, 2796), (2064, 2752),
                                                               (2048, 2732), (1024, 500), (1024, 1024)}
    # A version names one output (the assets' code version, each render row's style_version):
    # it only ever goes up, in the same change as the style's GOLDEN fingerprints.
    assert {spec.id: spec.version for spec in STYLES.values()} == STYLE_VERSIONS
    assert all(type(spec.version) is int for spec in STYLES.values())
    for spec in STYLES.values():
        assert spec.validate_config(None) == spec.default_config
        json.dumps(spec.default_config)
    with pytest.raises(LookupError, match="unknown style 'sepia'"):
        get_style("sepia")
    with pytest.raises(LookupError, match="unknown size preset 'iphone-3g'"):
        get_preset("iphone-3g")


def test_default_config_cannot_be_mutated_through_the_spec() -> None:
    spec = get_style("pop-poster")
    spec.default_config["palette"].append("#000000")
    assert len(spec.default_config["palette"]) == 6


@pytest.mark.parametrize(
    ("style", "config", "message"),
    [
        ("pop-poster", {"colours": 5}, "unknown config key 'colours'"),
        ("pop-poster", {"k": "6"}, "config key 'k': expected an integer"),
        ("pop-poster", {"k": True}, "config key 'k': expected an integer"),
        ("pop-poster", {"k": 99}, "config key 'k': expected 2..8"),
        ("pop-poster", {"k": None}, "config key 'k' is missing a value"),
        ("pop-poster", {"palette": ["red", "blue"]}, "config key 'palette': expected a colour"),
        ("halftone", {"angle": "45"}, "config key 'angle': expected a number"),
        ("warhol-grid", {"palettes": [["#000000"]]}, "config key 'palettes': expected a list of 2..8 colours"),
        ("duotone", {"steps": 1}, "config key 'steps': expected 0 .continuous. or 2..16"),
        ("duotone", {"stretch": 1}, "config key 'stretch': expected true or false"),
        ("duotone", [1, 2], "config must be a JSON object"),
    ],
)
def test_bad_configs_name_the_key(style: str, config: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_style(style).validate_config(config)  # type: ignore[arg-type]


def test_partial_config_is_merged_and_normalised() -> None:
    config = get_style("duotone").validate_config({"dark": "#ABCDEF", "steps": 0})
    assert config == {**get_style("duotone").default_config, "dark": "#abcdef", "steps": 0}


def _render(style: str, preset: str = "square-1024", **config: object) -> np.ndarray:
    spec, size = get_style(style), get_preset(preset)
    settings = spec.validate_config(config)
    pixels = preprocess(Image.fromarray(photo_like(800, 600, seed=5)), size)
    image = spec.compose(pixels, spec.quantize(pixels, settings), size, settings)
    return np.asarray(image.convert("RGB"))


def _colours(pixels: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(c) for c in np.unique(pixels.reshape(-1, 3), axis=0)}


def test_pop_poster_uses_only_its_palette_plus_ink() -> None:
    palette = ["#000080", "#ff0000", "#ffff00"]
    pixels = _render("pop-poster", k=3, palette=palette)
    allowed = {(0, 0, 128), (255, 0, 0), (255, 255, 0), (12, 12, 16)}
    assert _colours(pixels) == allowed  # outlines drawn in ink, every palette colour used
    assert _colours(_render("pop-poster", k=3, palette=palette, outline_width=0)) == allowed - {(12, 12, 16)}


def test_halftone_draws_dots_that_follow_the_screen() -> None:
    coarse = _render("halftone", dot_cells=20, outline_width=0)
    fine = _render("halftone", dot_cells=120, outline_width=0)
    flat = _render("pop-poster", k=5, outline_width=0)

    def transitions(pixels: np.ndarray) -> int:  # colour changes along rows: dots make many
        return int((pixels[:, 1:] != pixels[:, :-1]).any(-1).sum())

    assert transitions(fine) > transitions(coarse) > 2 * transitions(flat)


def test_warhol_grid_has_panels_in_different_palettes_separated_by_gutters() -> None:
    pixels = _render("warhol-grid", rows=2, cols=3, gutter=0.05, outline_width=0)
    gutter = (250, 250, 250)
    assert tuple(pixels[0, 0]) == gutter and tuple(pixels[300, 200]) != gutter
    columns_of_gutter = np.where((pixels == gutter).all(-1).all(0))[0]
    assert len(columns_of_gutter) >= 4 * 51 - 4  # four vertical gutters of ~51 px
    panels = [pixels[60:400, 60:300], pixels[60:400, 360:640], pixels[600:960, 700:960]]
    assert len({frozenset(_colours(panel)) for panel in panels}) == 3


def test_duotone_uses_colours_between_dark_and_light_only() -> None:
    pixels = _render("duotone", dark="#000000", light="#ff0000", steps=0)
    assert (pixels[..., 1:] == 0).all() and pixels[..., 0].min() == 0 and pixels[..., 0].max() == 255
    assert len(_colours(_render("duotone", steps=3))) == 3


def test_contain_preset_pads_with_white_paper_before_styling() -> None:
    size = get_preset("play-feature")
    pixels = preprocess(Image.fromarray(photo_like(300, 400, seed=1)), size)
    assert pixels.shape == (500, 1024, 3)
    assert (pixels[:, :300] == 255).all() and (pixels[:, -300:] == 255).all()
