"""The SQL seeds are the code registries, byte for byte (regenerate: run this module)."""

from __future__ import annotations

import json
from pathlib import Path

from render_pipeline.imaging import DEFAULT_PRESET_IDS, PRESETS, STYLES

SQL = Path(__file__).resolve().parents[2] / "sql"


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def styles_sql() -> str:
    rows = ",\n".join(
        f"    ({_text(s.id)}, {_text(s.name)}, {_text(s.description)}, {s.version}, "
        f"{_text(json.dumps(s.default_config, separators=(', ', ': ')))}::jsonb, true)"
        for s in STYLES.values()
    )
    return (
        "-- Style catalogue; mirrors render_pipeline.imaging.STYLES (checked by render_pipeline_tests/imaging/test_seeds.py).\n"
        "INSERT INTO styles (id, name, description, version, algorithm_config, is_active) VALUES\n"
        f"{rows}\n"
        "ON CONFLICT (id) DO UPDATE SET\n"
        "    name = EXCLUDED.name,\n"
        "    description = EXCLUDED.description,\n"
        "    version = EXCLUDED.version,\n"
        "    algorithm_config = EXCLUDED.algorithm_config,\n"
        "    is_active = EXCLUDED.is_active;\n"
    )


def size_presets_sql() -> str:
    rows = ",\n".join(
        f"    ({_text(p.id)}, {_text(p.name)}, {_text(p.store)}, {p.width}, {p.height}, {_text(p.fit)}, "
        f"{'true' if p.id in DEFAULT_PRESET_IDS else 'false'})"
        for p in PRESETS.values()
    )
    return (
        "-- Size presets; mirrors render_pipeline.imaging.PRESETS (checked by render_pipeline_tests/imaging/test_seeds.py).\n"
        "INSERT INTO size_presets (id, name, store, width, height, fit_mode, is_default) VALUES\n"
        f"{rows}\n"
        "ON CONFLICT (id) DO UPDATE SET\n"
        "    name = EXCLUDED.name,\n"
        "    store = EXCLUDED.store,\n"
        "    width = EXCLUDED.width,\n"
        "    height = EXCLUDED.height,\n"
        "    fit_mode = EXCLUDED.fit_mode,\n"
        "    is_default = EXCLUDED.is_default;\n"
    )


def test_seed_files_match_the_registries() -> None:
    assert (SQL / "seed_styles.sql").read_text() == styles_sql()
    assert (SQL / "seed_size_presets.sql").read_text() == size_presets_sql()


if __name__ == "__main__":
    (SQL / "seed_styles.sql").write_text(styles_sql())
    (SQL / "seed_size_presets.sql").write_text(size_presets_sql())
