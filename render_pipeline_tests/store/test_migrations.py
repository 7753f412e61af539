"""Migrations on a real PostgreSQL: round trips, idempotence and clean failure; the seeds load the
style and preset catalogues exactly as the code has them, field by field."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from render_pipeline import imaging
from render_pipeline.store import migrations


def _tables(conn) -> set[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r["tablename"] for r in rows}


@pytest.fixture
def conn(database_url: str):
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as connection:
        yield connection


def test_upgrade_downgrade_upgrade_round_trip(conn):
    applied = migrations.upgrade(conn)
    assert [m.version for m in applied] == [m.version for m in migrations.discover()]
    assert {"assets", "renders", "styles", "size_presets", "schema_migrations"} <= _tables(conn)
    assert migrations.current_version(conn) == migrations.latest_version()

    assert migrations.upgrade(conn) == []  # applying twice is a no-op

    rolled_back = migrations.downgrade(conn, to=0)
    assert [m.version for m in rolled_back] == sorted((m.version for m in applied), reverse=True)
    assert _tables(conn) == {"schema_migrations"}
    assert migrations.current_version(conn) == 0

    migrations.upgrade(conn)
    assert migrations.current_version(conn) == migrations.latest_version()
    assert all(row.applied_at and row.checksum_matches for row in migrations.status(conn))


def _render_indexes(conn) -> set[str]:
    return {r["indexname"] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename='renders'")}


def test_rolling_back_the_scale_indexes_restores_the_runbook_indexes(conn):
    migrations.upgrade(conn)
    scale = {"renders_failed_live_idx", "renders_failed_by_update_idx", "renders_completed_keyset_idx",
             "renders_live_run_idx"}
    replaced = {"renders_failed_by_time_idx", "renders_completed_at_idx"}
    assert scale <= _render_indexes(conn) and not replaced & _render_indexes(conn)
    migrations.downgrade(conn, to=2)
    assert replaced <= _render_indexes(conn) and not scale & _render_indexes(conn)


def test_downgrade_to_a_version_keeps_earlier_ones(conn):
    migrations.upgrade(conn)
    migrations.downgrade(conn, to=1)
    assert migrations.current_version(conn) == 1
    indexes = {r["indexname"] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename='renders'")}
    assert "renders_failed_by_time_idx" not in indexes
    assert "renders" in _tables(conn)


def test_seeds_load_and_are_idempotent(conn):
    migrations.upgrade(conn)
    migrations.seed(conn)
    first = conn.execute("SELECT count(*) AS n FROM styles").fetchone()["n"]
    migrations.seed(conn)
    assert conn.execute("SELECT count(*) AS n FROM styles").fetchone()["n"] == first >= 4
    assert conn.execute("SELECT count(*) AS n FROM size_presets").fetchone()["n"] >= 8


def test_a_failing_migration_leaves_the_schema_unchanged(conn, tmp_path: Path):
    directory = tmp_path / "migrations"
    shutil.copytree(migrations.MIGRATIONS_DIR, directory)
    broken = f"{migrations.latest_version() + 1:03d}_broken"
    (directory / f"{broken}.sql").write_text(
        "CREATE TABLE half_done (id int);\nALTER TABLE renders ADD COLUMN oops no_such_type;\n"
    )
    (directory / f"{broken}.rollback.sql").write_text("DROP TABLE half_done;\n")

    with pytest.raises(migrations.MigrationError, match=rf"{broken}.sql: statement 2 .*no_such_type"):
        migrations.upgrade(conn, directory=directory)
    assert "half_done" not in _tables(conn)
    assert migrations.current_version(conn) == migrations.latest_version()  # the good ones stay applied


def test_status_flags_an_edited_migration(conn, tmp_path: Path):
    directory = tmp_path / "migrations"
    shutil.copytree(migrations.MIGRATIONS_DIR, directory)
    migrations.upgrade(conn, directory=directory)
    edited = directory / "002_runbook_indexes.sql"
    edited.write_text(edited.read_text() + "\n-- edited after release\n")
    by_version = {row.version: row for row in migrations.status(conn, directory=directory)}
    assert by_version[1].checksum_matches is True
    assert by_version[2].checksum_matches is False


def test_missing_rollback_file_is_an_error(tmp_path: Path):
    (tmp_path / "001_only_forward.sql").write_text("SELECT 1;")
    with pytest.raises(migrations.MigrationError, match="missing rollback"):
        migrations.discover(tmp_path)


def test_split_statements_respects_quotes_dollar_quotes_and_comments():
    script = """
    -- a comment; with a semicolon
    INSERT INTO t VALUES ('a;b', 'it''s');
    /* block; comment */
    CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;
    SELECT "odd;name" FROM t;
    """
    statements = migrations.split_statements(script)
    assert len(statements) == 3
    assert statements[0].endswith("VALUES ('a;b', 'it''s')")
    assert "$body$ SELECT 1; $body$" in statements[1]
    assert statements[2] == 'SELECT "odd;name" FROM t'


def test_schema_constraints_reject_impossible_rows(database):
    with database.connection() as c, pytest.raises(psycopg.errors.CheckViolation):
        c.execute(
            "INSERT INTO assets (id, partition_key, object_key, status) "
            "VALUES (gen_random_uuid(), 'a/x', 'uploads/a/x', 'exploded')"
        )
    with database.connection() as c, pytest.raises(psycopg.errors.CheckViolation):
        c.execute(
            "INSERT INTO assets (id, partition_key, object_key, status) "
            "VALUES (gen_random_uuid(), 'a/y', 'uploads/a/y', 'invalid')"  # invalid needs a reason
        )


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
