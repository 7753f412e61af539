"""`render-pipeline doctor` passes on a healthy stack and fails clearly — and quickly — when
the database or the object store is down or the daemon is not running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance
from dagster._daemon.types import DaemonHeartbeat

from render_pipeline.commands.doctor import FAIL, OK, WARN, run_checks
from render_pipeline.store import migrations
from render_pipeline_tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY, s3_settings
from render_pipeline_tests.processes import SETTING_PREFIXES, clean_environ


def _heartbeat(dagster_home: Path) -> None:
    """Write the heartbeats a running `dagster-daemon` writes, into the instance's storage."""
    instance = DagsterInstance.from_config(str(dagster_home))
    for daemon_type in instance.get_required_daemon_types():
        instance.add_daemon_heartbeat(DaemonHeartbeat(time.time(), daemon_type, None, None))
    instance.dispose()


@pytest.fixture
def stack_env(database_url, s3_endpoint, s3_bucket, tmp_path) -> dict[str, str]:
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    return {
        "RENDER_PIPELINE_HOME": str(tmp_path),
        "DATABASE_URL": database_url,
        **s3_settings(s3_endpoint, s3_bucket),
        "DAGSTER_HOME": str(dagster_home),
    }


def test_doctor_passes_on_a_healthy_stack(database, stack_env):
    _heartbeat(Path(stack_env["DAGSTER_HOME"]))
    result = subprocess.run([sys.executable, "-m", "render_pipeline.cli", "doctor", "--json"],
                            env={**clean_environ(), **stack_env}, capture_output=True, text=True, timeout=120)
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert result.returncode == 0, checks
    assert set(checks) == {"configuration", "database", "object_store", "dagster_instance", "daemon",
                           "sensors_schedules", "run_queue", "dead_runs", "stuck_renders", "stuck_uploads",
                           "failure_rate"}
    assert {c["status"] for c in checks.values()} == {OK}
    assert f"schema version {migrations.latest_version():03d}" in checks["database"]["detail"]
    assert "uploads/ and renders/ can be listed" in checks["object_store"]["detail"]


def _checks(monkeypatch, env: dict[str, str]) -> dict:
    for name in list(os.environ):
        if name.startswith(SETTING_PREFIXES):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    checks = {c.name: c for c in run_checks(timeout=20)}
    return checks, time.monotonic() - started


def test_doctor_fails_clearly_and_fast_when_database_and_store_are_down(database, stack_env, monkeypatch, capsys):
    _heartbeat(Path(stack_env["DAGSTER_HOME"]))
    down = {**stack_env, "DATABASE_URL": "postgresql://render@127.0.0.1:1/aso_render",
            "MINIO_ENDPOINT": "http://127.0.0.1:1"}
    checks, elapsed = _checks(monkeypatch, down)
    assert elapsed < 20
    assert checks["database"].status == FAIL
    assert "cannot connect to PostgreSQL at 127.0.0.1:1/aso_render" in checks["database"].detail
    assert checks["object_store"].status == FAIL and "127.0.0.1:1" in checks["object_store"].detail
    assert checks["daemon"].status == OK  # the rest is still reported

    from render_pipeline.cli import main
    assert main(["doctor"]) == 1
    lines = capsys.readouterr().out.splitlines()
    # The pipeline's checks read the database: one FAIL line for them.
    assert len(lines) == 8 and sum(line.startswith("FAIL") for line in lines) == 3


def test_doctor_reports_stopped_embedded_database_and_missing_daemon(stack_env, monkeypatch, tmp_path):
    env = {k: v for k, v in stack_env.items() if k != "DATABASE_URL"}
    env["RENDER_PIPELINE_HOME"] = str(tmp_path / "fresh-home")
    checks, _ = _checks(monkeypatch, env)
    assert checks["database"].status == FAIL
    assert "embedded PostgreSQL" in checks["database"].detail and "not running" in checks["database"].detail
    assert not (tmp_path / "fresh-home" / "pgdata" / "postmaster.pid").exists()  # checked, never started
    assert checks["daemon"].status == FAIL and "dagster-daemon run" in checks["daemon"].detail


def test_doctor_checks_the_recorded_stack_and_says_how_this_shell_differs(database, stack_env, monkeypatch):
    from render_pipeline.settings import load_settings
    from render_pipeline.stack import DatabaseUrls, new_record, write_record

    _heartbeat(Path(stack_env["DAGSTER_HOME"]))
    home = Path(stack_env["RENDER_PIPELINE_HOME"])
    stack = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "render-pipeline", "up"])
    deadline = time.monotonic() + 30  # until it has exec'd, its command line is this worker's
    while b"render-pipeline" not in Path(f"/proc/{stack.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        record = new_record(load_settings(stack_env), DatabaseUrls(stack_env["DATABASE_URL"], stack_env["DATABASE_URL"]),
                            "http://127.0.0.1:3000", environ=stack_env)
        write_record(home, record.__class__(**{**record.__dict__, "pid": stack.pid}))
        secrets_only = {"RENDER_PIPELINE_HOME": str(home), "MINIO_ACCESS_KEY": S3_ACCESS_KEY,
                        "MINIO_SECRET_KEY": S3_SECRET_KEY}
        checks, _ = _checks(monkeypatch, secrets_only)
        assert checks["configuration"].status == WARN
        assert "this shell differs from the stack" in checks["configuration"].detail
        assert "object_store: shell 'local directory" in checks["configuration"].detail
        assert checks["database"].status == OK and checks["object_store"].status == OK
        assert "s3 " in checks["object_store"].detail  # the stack's store, not this shell's local one

        checks, _ = _checks(monkeypatch, {"RENDER_PIPELINE_HOME": str(home)})
        assert "MINIO_ACCESS_KEY, MINIO_SECRET_KEY, which this shell does not set" in checks["configuration"].detail
        # Still the stack's store, tried with a placeholder (MinIO refuses it; moto accepts any key).
        assert "s3 " in checks["object_store"].detail
    finally:
        stack.kill()
        stack.wait()
