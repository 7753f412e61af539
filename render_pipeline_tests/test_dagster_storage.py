"""Dagster's PostgreSQL storage as dagster.yaml configures it reuses connections in the run
worker, where dagster-postgres alone opens one per read and write."""

from __future__ import annotations

import os

import psycopg
from dagster import instance_for_test
from psycopg import sql
from psycopg.conninfo import make_conninfo

from render_pipeline.resources.embedded_postgres import dagster_storage_url
from render_pipeline_tests.orchestration_helpers import definitions_for, execute, jpeg_bytes, tick


def _sessions_opened(admin_url: str, database: str, work) -> int:
    """New PostgreSQL sessions on ``database`` while ``work()`` runs (pg_stat_database)."""

    def sessions() -> int:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            return conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,)).fetchone()[0]

    before = sessions()
    work()
    return sessions() - before


def test_a_render_run_opens_a_handful_of_connections_not_one_per_event(
    s3_env, boto, s3_bucket, pg_admin_url, tmp_path
):
    defs = definitions_for({**s3_env, "RENDER_DEFAULT_STYLES": "duotone"}, presets=("play-feature",))
    opened = {}
    for name, storage in (
        ("plain", {"postgres": {"postgres_url": None}}),
        ("pooled", {"custom": {"module": "render_pipeline.dagster_storage", "class": "PooledPostgresStorage",
                               "config": {"postgres_url": None}}}),
    ):
        database = f"dagster_{name}_{tmp_path.name[-8:].lower()}".replace("-", "_")
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        url = dagster_storage_url(pg_admin_url, database)
        (storage.get("postgres") or storage["custom"]["config"])["postgres_url"] = url
        for i in range(2):
            boto.put_object(Bucket=s3_bucket, Key=f"uploads/{name}{i}/p.jpg", Body=jpeg_bytes(64, 48, seed=i))
        (tmp_path / name).mkdir()
        with instance_for_test(overrides={"storage": storage}, temp_dir=str(tmp_path / name)) as instance:
            requests = tick(defs, instance, "uploads_sensor").run_requests

            def run_all() -> None:
                assert all(execute(defs, instance, request).success for request in requests)

            opened[name] = _sessions_opened(pg_admin_url, database, run_all)
    # Measured: 6 with the pooled storage, 290 without it (two runs of one upload).
    assert opened["pooled"] <= 20 and opened["plain"] >= 10 * opened["pooled"], opened


def test_with_no_url_the_storage_is_the_one_up_would_prepare(tmp_path, monkeypatch):
    """Dagster's own commands from a fresh clone: no DAGSTER_PG_URL, no database configured."""
    from render_pipeline.dagster_storage import PooledPostgresStorage
    from render_pipeline.resources.embedded_postgres import stop_embedded_server

    monkeypatch.setenv("RENDER_PIPELINE_HOME", str(tmp_path / "home"))
    for name in ("DAGSTER_PG_URL", "DATABASE_URL", "DB_HOST"):
        monkeypatch.setenv(name, "")  # recorded, so the URL the storage exports is undone after the test
        monkeypatch.delenv(name)
    try:
        storage = PooledPostgresStorage.from_config_value(None, {})
        assert storage.run_storage.get_runs_count() == 0
        assert f"host={tmp_path / 'home' / 'pgdata'}" in os.environ["DAGSTER_PG_URL"]  # children attach to it
        with psycopg.connect(make_conninfo(host=str(tmp_path / "home" / "pgdata"), user="postgres",
                                           dbname="aso_render")) as conn:
            assert conn.execute("SELECT count(*) FROM styles").fetchone()[0] >= 4  # migrated and seeded
    finally:
        stop_embedded_server(tmp_path / "home")
