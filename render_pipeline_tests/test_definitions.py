"""The one Definitions object refuses default styles or presets the catalogues do not have: one
line naming the variable, the unknown ids and the choices, before anything is built."""

from __future__ import annotations

import pytest

from render_pipeline import imaging
from render_pipeline.definitions import build_definitions
from render_pipeline.settings import ConfigError, load_settings


@pytest.mark.parametrize(
    ("variable", "value", "unknown", "catalogue"),
    [
        ("RENDER_DEFAULT_STYLES", "duotone,sepia,noir", "sepia, noir", imaging.STYLES),
        ("RENDER_DEFAULT_PRESETS", "square-1024,iphone-3g", "iphone-3g", imaging.PRESETS),
    ],
    ids=["styles", "presets"],
)
def test_unknown_default_ids_are_named_with_the_choices(variable, value, unknown, catalogue) -> None:
    with pytest.raises(ConfigError) as refused:
        build_definitions(load_settings({variable: value}))
    assert refused.value.variable == variable
    assert str(refused.value) == f"{variable}: unknown id(s) {unknown} (choose from {', '.join(catalogue)})"
