"""The style and preset catalogues in code and in the sql/ seeds agree, field by field."""

from __future__ import annotations

from render_pipeline import imaging


def test_seeded_styles_match_the_style_registry(database):
    with database.connection() as conn:
        rows = {r["id"]: r for r in conn.execute("SELECT * FROM styles").fetchall()}
    assert set(rows) == set(imaging.STYLES)
    for style_id, spec in imaging.STYLES.items():
        row = rows[style_id]
        assert (row["name"], row["description"], row["version"]) == (spec.name, spec.description, spec.version)
        assert row["algorithm_config"] == spec.validate_config(None)
        assert row["is_active"]


def test_seeded_presets_match_the_preset_registry(database):
    with database.connection() as conn:
        rows = {r["id"]: r for r in conn.execute("SELECT * FROM size_presets").fetchall()}
    assert set(rows) == set(imaging.PRESETS)
    for preset_id, preset in imaging.PRESETS.items():
        row = rows[preset_id]
        assert (row["name"], row["store"], row["width"], row["height"], row["fit_mode"]) == (
            preset.name, preset.store, preset.width, preset.height, preset.fit,
        )
        assert row["is_default"] == (preset_id in imaging.DEFAULT_PRESET_IDS)
