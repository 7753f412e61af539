"""`render-pipeline up` prepares the embedded stack: database, schema, seeds, store, DAGSTER_HOME."""

from __future__ import annotations

import psycopg
import yaml

from render_pipeline.commands.up import prepare
from render_pipeline.resources.embedded_postgres import stop_embedded_server
from render_pipeline.settings import load_settings
from render_pipeline.store import migrations


def test_prepare_on_embedded_defaults(tmp_path):
    settings = load_settings({"RENDER_PIPELINE_HOME": str(tmp_path / "home")})
    try:
        env = prepare(settings)
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == migrations.latest_version()
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


def test_a_missing_bucket_stops_start_up_cleanly_or_is_created_on_request(s3_endpoint, tmp_path, monkeypatch, capsys):
    import uuid

    from render_pipeline.cli import main
    from render_pipeline.resources.embedded_postgres import embedded_server_running
    from render_pipeline_tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY, make_s3_store

    bucket = f"missing-{uuid.uuid4().hex[:8]}"
    for name, value in {"RENDER_PIPELINE_HOME": str(tmp_path / "home"), "MINIO_ENDPOINT": s3_endpoint,
                        "MINIO_ACCESS_KEY": S3_ACCESS_KEY, "MINIO_SECRET_KEY": S3_SECRET_KEY,
                        "MINIO_BUCKET": bucket}.items():
        monkeypatch.setenv(name, value)
    for name in ("DATABASE_URL", "DAGSTER_PG_URL", "DAGSTER_HOME"):
        monkeypatch.delenv(name, raising=False)

    assert main(["up", "--prepare-only"]) == 1
    assert f"bucket '{bucket}' does not exist" in capsys.readouterr().err
    assert not embedded_server_running(tmp_path / "home")  # what it started, it stopped

    try:
        assert main(["up", "--prepare-only", "--create-bucket"]) == 0
        assert f"created bucket {bucket}" in capsys.readouterr().out
        make_s3_store(s3_endpoint, bucket).check_usable()
    finally:
        stop_embedded_server(tmp_path / "home")
