"""When a run fails, each of its unfinished renders is failed with the step of its own style
that failed and that step's error, not with the run's first failure.

Two styles' decode steps fail for real: the database gives up waiting for row locks this
test holds (``lock_timeout``), while a third style renders."""

from __future__ import annotations

import psycopg
from psycopg import sql

from render_pipeline.keys import asset_id_for, render_id_for
from render_pipeline_tests.orchestration_helpers import definitions_for, jpeg_bytes, tick
from render_pipeline_tests.reliability.harness import Pipeline

STYLES = ("duotone", "halftone", "warhol-grid")
LOCKED = ("halftone", "warhol-grid")
KEY = "uploads/lk/photo.jpg"


def test_each_render_of_a_failed_run_names_its_own_styles_failed_step(
    database, database_url, tmp_path, instance, monkeypatch
):
    root = tmp_path / "objects"
    env = {"DATABASE_URL": database_url, "LOCAL_STORE_ROOT": str(root), "RENDER_DEFAULT_STYLES": ",".join(STYLES)}
    monkeypatch.setenv("DATABASE_URL", database_url)
    defs = definitions_for(env, presets=("play-feature",))
    (root / "uploads" / "lk").mkdir(parents=True)
    (root / KEY).write_bytes(jpeg_bytes(64, 48, seed=3))
    [request] = tick(defs, instance, "uploads_sensor").run_requests
    # The run renders two styles at a second preset, whose rows this test holds locked.
    asset_id = asset_id_for(KEY)
    locked_ids = [render_id_for(asset_id, style, "square-1024") for style in LOCKED]
    with psycopg.connect(database_url, autocommit=True) as admin:
        for render_id, style in zip(locked_ids, LOCKED):
            admin.execute("INSERT INTO renders (id, asset_id, style_id, size_preset_id, status, error_message) "
                          "VALUES (%s, %s, %s, 'square-1024', 'failed', 'earlier failure')", (render_id, asset_id, style))
        dbname = admin.info.dbname
        admin.execute(sql.SQL("ALTER DATABASE {} SET lock_timeout = '200ms'").format(sql.Identifier(dbname)))
    config = {"ops": {f"renders__{style.replace('-', '_')}": {"config": {"presets": ["square-1024"]}}
                      for style in LOCKED}}
    pipeline = Pipeline(defs, instance)
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT id FROM renders WHERE id = ANY(%s) FOR UPDATE", (locked_ids,))
        outcome = pipeline._execute_only(request.with_replaced_attrs(run_config=config, run_key=None))
        holder.rollback()
    assert not outcome.success
    pipeline.notify_failure(outcome.run_id)

    with database.connection() as conn:
        rows = {(r["style_id"], r["size_preset_id"]): r for r in conn.execute("SELECT * FROM renders").fetchall()}
    assert rows[("duotone", "play-feature")]["status"] == "completed"
    for style in LOCKED:
        row = rows[(style, "play-feature")]  # queued by the run's `uploads` step, never started
        step = f"renders__{style.replace('-', '_')}.{style.replace('-', '_')}_decode"
        assert row["status"] == "failed" and row["error_message"].startswith(f"run failed in step {step}: "), row
        assert "lock timeout" in row["error_message"] and row["error_message"].endswith(f"(run {outcome.run_id})")
