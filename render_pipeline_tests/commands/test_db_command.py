"""`render-pipeline db …` as an operator runs it, against a real database."""

from __future__ import annotations

import subprocess

from render_pipeline.store import migrations
from render_pipeline_tests.commands.conftest import cli_process


def test_upgrade_then_status_then_downgrade(database_url, cli):
    env = {"DATABASE_URL": database_url}
    upgraded = cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "applied 001_initial_schema" in upgraded.stdout
    assert "seeded seed_styles.sql" in upgraded.stdout

    again = cli("db", "upgrade", env=env)
    assert f"schema is up to date at version {migrations.latest_version():03d}" in again.stdout

    status = cli("db", "status", env=env)
    assert status.returncode == 0
    assert "001_initial_schema" in status.stdout and "pending" not in status.stdout
    latest = migrations.latest_version()
    assert f"current version: {latest:03d} of {latest:03d}" in status.stdout

    down = cli("db", "downgrade", "--to", "1", env=env)
    assert "rolled back 002_runbook_indexes" in down.stdout
    assert "002_runbook_indexes" in cli("db", "status", env=env).stdout.split("pending")[0]


def test_malformed_setting_is_one_line_naming_the_variable(cli):
    result = cli("db", "status", env={"DB_HOST": "localhost", "DB_PORT": "not-a-port"})
    assert result.returncode == 2
    assert result.stderr.strip() == "configuration error: DB_PORT: 'not-a-port' is not a port number (1-65535, e.g. 5432)"


def test_unreachable_database_is_one_line_not_a_traceback():
    """Through a real process: what reaches the operator's terminal is one line."""
    result = cli_process("db", "status", env={"DATABASE_URL": "postgresql://render@127.0.0.1:9/aso_render?connect_timeout=2"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: cannot connect to PostgreSQL at 127.0.0.1:9/aso_render")
    assert len(result.stderr.strip().splitlines()) == 1


def test_wrong_password_is_reported_without_the_password(database_url, cli):
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    info = conninfo_to_dict(database_url)
    # The embedded server trusts local sockets, so use a user that does not exist instead.
    bad = make_conninfo(database_url, user="no_such_user", password="Sup3rSecretPw")
    result = cli("db", "status", env={"DATABASE_URL": bad})
    assert result.returncode == 1
    assert "no_such_user" in result.stderr and "Sup3rSecretPw" not in result.stderr
    assert info["dbname"] in result.stderr


def test_url_prints_what_psql_accepts_without_the_password(database_url, tmp_path, cli):
    embedded = cli("db", "url", env={"RENDER_PIPELINE_HOME": str(tmp_path)})
    assert embedded.stdout.strip() == f"postgresql://postgres@/aso_render?host={tmp_path}/pgdata"
    assert "not running" in embedded.stderr  # and it was not started to answer
    assert not (tmp_path / "pgdata").exists()
    dagster = cli("db", "url", "--dagster", env={"RENDER_PIPELINE_HOME": str(tmp_path)})
    assert dagster.stdout.strip() == f"postgresql://postgres@/dagster?host={tmp_path}/pgdata"

    configured = cli("db", "url", env={"DATABASE_URL": "postgresql://render:s3cret@db.internal:5433/aso_render"})
    assert configured.stdout.strip() == "postgresql://render@db.internal:5433/aso_render"
    assert "s3cret" not in configured.stdout + configured.stderr and "PGPASSWORD" in configured.stderr

    live = cli("db", "url", env={"DATABASE_URL": database_url})
    check = subprocess.run(["psql", live.stdout.strip(), "-Atc", "SELECT 1"], capture_output=True, text=True)
    assert check.stdout.strip() == "1", check.stderr
