"""`render-pipeline up` prepares the embedded stack: database, schema, seeds, store, DAGSTER_HOME;
refuses bad limits; marks the runs it interrupted failed.  The supervision itself is drilled on a
live stack in test_up_supervision.py."""

from __future__ import annotations

import json
import subprocess
import uuid

import psycopg
import yaml

from render_pipeline.commands.up import prepare
from render_pipeline.resources.embedded_postgres import embedded_server_running, stop_embedded_server
from render_pipeline.settings import load_settings
from render_pipeline.store import migrations
from render_pipeline_tests.conftest import make_s3_store, s3_settings


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


def test_a_missing_bucket_stops_start_up_cleanly_or_is_created_on_request(cli, s3_endpoint, tmp_path):
    bucket = f"missing-{uuid.uuid4().hex[:8]}"
    env = {"RENDER_PIPELINE_HOME": str(tmp_path / "home"), **s3_settings(s3_endpoint, bucket)}

    refused = cli("up", "--prepare-only", env=env)
    assert refused.returncode == 1
    assert f"bucket '{bucket}' does not exist" in refused.stderr
    assert not embedded_server_running(tmp_path / "home")  # what it started, it stopped

    try:
        created = cli("up", "--prepare-only", "--create-bucket", env=env)
        assert created.returncode == 0, created.stderr
        assert f"created bucket {bucket}" in created.stdout
        make_s3_store(s3_endpoint, bucket).check_usable()
    finally:
        stop_embedded_server(tmp_path / "home")


def test_a_bad_hang_limit_or_grace_is_one_line_and_starts_nothing(cli, tmp_path):
    home = {"RENDER_PIPELINE_HOME": str(tmp_path / "home")}
    for value in ("10", "soon"):
        result = cli("up", env={**home, "RENDER_DAEMON_HANG_SECONDS": value})
        assert result.returncode == 2
        error = result.stderr.strip()
        assert len(error.splitlines()) == 1 and "RENDER_DAEMON_HANG_SECONDS" in error and "30 s" in error
    result = cli("up", "--run-grace", "-1", env=home)
    assert result.returncode == 2 and "--run-grace" in result.stderr
    assert not (tmp_path / "home" / "pgdata").exists()


def test_interrupted_runs_are_marked_failed_with_the_reason(instance):
    """At start: a STARTED run whose worker is gone; at stop: the runs launched through the
    gRPC servers `up` stopped, and only those."""
    from dagster import DagsterEventType, DagsterRunStatus
    from dagster._core.events import EngineEventData
    from dagster._core.test_utils import create_run_for_test

    from render_pipeline.commands.up import GRPC_INFO_TAG, fail_runs_of_stopped_servers, fail_runs_without_worker

    def started(socket: str | None = None, *, worker_pid: int | None = None):
        tags = {GRPC_INFO_TAG: json.dumps({"host": "localhost", "socket": socket})} if socket else {}
        run = create_run_for_test(instance, job_name="render_uploads", status=DagsterRunStatus.STARTED, tags=tags)
        if worker_pid is not None:
            instance.report_engine_event("Started process for run.", run, EngineEventData.in_process(worker_pid))
        return run.run_id

    gone = subprocess.Popen(["true"])
    gone.wait()
    orphan, ours, theirs = started(worker_pid=gone.pid), started("/tmp/ours-sock"), started("/tmp/theirs-sock")

    fail_runs_without_worker(instance)
    fail_runs_of_stopped_servers(instance, [b"python\0-m\0dagster\0api\0grpc\0--socket\0/tmp/ours-sock\0"])

    def failure(run_id: str) -> list[str]:
        return [event.message for event in instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)]

    assert failure(orphan) == ["run worker gone: found by `render-pipeline up` at start"]
    assert failure(ours) == ["run worker stopped: `render-pipeline up` shut down before the run finished"]
    assert failure(theirs) == [] and instance.get_run_by_id(theirs).status == DagsterRunStatus.STARTED
