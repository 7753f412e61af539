"""`render-pipeline up` prepares the embedded stack: database, schema, seeds, store, DAGSTER_HOME."""

from __future__ import annotations

import psycopg
import yaml

from render_pipeline.commands.up import prepare
from render_pipeline.resources.embedded_postgres import stop_embedded_server
from render_pipeline.settings import load_settings


def test_prepare_on_embedded_defaults(tmp_path):
    settings = load_settings({"RENDER_PIPELINE_HOME": str(tmp_path / "home")})
    try:
        env = prepare(settings)
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == 2
            assert conn.execute("SELECT count(*) FROM styles").fetchone()[0] >= 4
        dagster_url = env["DAGSTER_PG_URL"]
        assert dagster_url.startswith("postgresql+psycopg2://") and "/dagster?" in dagster_url
        instance_config = yaml.safe_load((tmp_path / "home" / "dagster_home" / "dagster.yaml").read_text())
        storage = instance_config["storage"]["custom"]
        assert (storage["module"], storage["class"]) == ("render_pipeline.dagster_storage", "PooledPostgresStorage")
        assert storage["config"] == {}  # DAGSTER_PG_URL is read by the storage class itself
        assert env["DAGSTER_EVENT_BATCH_SIZE"] == "64"  # batched event writes in every process up starts
        assert (instance_config["run_coordinator"]["module"], instance_config["run_coordinator"]["class"]) == (
            "render_pipeline.run_queue", "PausableRunCoordinator")
        assert (tmp_path / "home" / "objects").is_dir()

        again = prepare(settings)  # a second start reuses everything and applies nothing new
        assert again["DATABASE_URL"] == env["DATABASE_URL"]
    finally:
        stop_embedded_server(tmp_path / "home")
