"""Scenario 8: with real-looking credentials configured, nothing the system produces — log
lines (ours, Dagster's, botocore's), run tags and config, event-log entries, asset metadata,
error messages in SQL, the UI's view of the resources, files in the instance directory —
contains them, on the success path and on the failure paths (S3 errors that echo the key id,
an unreachable database)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from dagster import instance_for_test
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster_shared.serdes import serialize_value
from psycopg.conninfo import conninfo_to_dict

from render_pipeline_tests.orchestration_helpers import definitions_for, jpeg_bytes
from render_pipeline_tests.reliability.harness import Pipeline, requeue

pytestmark = pytest.mark.reliability

ACCESS_KEY = "AKIAZ7QX4RELIAB1LTY9"
SECRET_KEY = "q9Vd+Tz0mW3k/JxR7yLp2Nc8Hs5Ub1Ge6Af4KoQi"
DB_PASSWORD = "pg-Pr0d-Sx7!k2@vQ9#w"


def _find(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value in text]


@pytest.fixture
def secret_env(database, database_url, proxy, s3_bucket, monkeypatch) -> dict[str, str]:
    """The operator's old-style env file: DB_* with a password and MinIO keys."""
    info = conninfo_to_dict(database_url)
    with database.connection() as conn:
        conn.execute(f"CREATE ROLE render_app LOGIN SUPERUSER PASSWORD '{DB_PASSWORD}'")
    env = {
        "DB_HOST": info["host"], "DB_PORT": "5432", "DB_NAME": info["dbname"], "DB_USER": "render_app",
        "DB_PASSWORD": DB_PASSWORD,
        "MINIO_ENDPOINT": proxy.url, "MINIO_ACCESS_KEY": ACCESS_KEY, "MINIO_SECRET_KEY": SECRET_KEY,
        "MINIO_BUCKET": s3_bucket, "RENDER_DEFAULT_STYLES": "duotone",
        "MINIO_READ_TIMEOUT": "2", "MINIO_MAX_ATTEMPTS": "2", "LOG_LEVEL": "DEBUG",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield env
    with database.connection() as conn:
        conn.execute("DROP OWNED BY render_app")
        conn.execute("DROP ROLE render_app")


def _recorded_texts(instance, defs, database) -> dict[str, str]:
    """What the instance, the UI and the tables hold after the runs, by where it is."""
    texts: dict[str, str] = {}
    for run in instance.get_runs():
        texts[f"run {run.run_id} record (tags, config)"] = serialize_value(run)
        texts[f"run {run.run_id} event log"] = "\n".join(serialize_value(e) for e in instance.all_logs(run.run_id))
    texts["UI view of the definitions (resources, sensors, jobs)"] = serialize_value(
        RepositorySnap.from_def(defs.get_repository_def())
    )
    with database.connection() as conn:
        texts["assets table"] = str(conn.execute("SELECT * FROM assets").fetchall())
        texts["renders table"] = str(conn.execute("SELECT * FROM renders").fetchall())
    for path in Path(instance.root_directory).rglob("*"):
        if path.is_file():
            texts[f"instance file {path.name}"] = path.read_bytes().decode("utf-8", "replace")
    return texts


def test_no_credentials_anywhere(secret_env, proxy, boto, s3_bucket, database, caplog, capfd, tmp_path):
    caplog.set_level(logging.DEBUG)
    (tmp_path / "dagster_home").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        defs = definitions_for(secret_env, presets=("play-feature",))
        pipeline = Pipeline(defs, instance)
        boto.put_object(Bucket=s3_bucket, Key="uploads/ok/p.jpg", Body=jpeg_bytes(64, 48, seed=31))
        boto.put_object(Bucket=s3_bucket, Key="uploads/denied/p.jpg", Body=jpeg_bytes(64, 48, seed=32))
        # S3 answers like AWS does for a bad key: the error body echoes the access key id.
        proxy.add(ops=("put",), key_prefix="renders/", status=403, code="InvalidAccessKeyId",
                  extra_xml=f"<AWSAccessKeyId>{ACCESS_KEY}</AWSAccessKeyId>")
        outcomes = pipeline.drain()
        assert outcomes  # the runs go on; the renders the store refused fail, with the reason
        with database.connection() as conn:
            rows = conn.execute("SELECT * FROM renders").fetchall()
        assert rows and {r["status"] for r in rows} == {"failed"}
        failed_rows = str(rows)
        proxy.clear()
        requeue(database, "status = 'failed'")
        outcomes += pipeline.launch(pipeline.requeue_tick())
        assert outcomes[-1].success

        # An unreachable database, configured with the same password.
        broken = {**secret_env, "DB_HOST": str(tmp_path / "no-such-socket-dir")}
        broken_defs = definitions_for(broken, presets=("play-feature",))
        with pytest.raises(Exception) as excinfo:
            Pipeline(broken_defs, instance).tick()
        error_text = "".join([str(excinfo.value), repr(excinfo.value)])

        texts = {"exception from the failed tick": error_text, "renders after the failure": failed_rows,
                 **_recorded_texts(instance, defs, database)}

    captured = capfd.readouterr()
    texts["stdout"], texts["stderr"] = captured.out, captured.err
    # Every log record at INFO and above, from every logger (ours, Dagster, botocore, psycopg).
    texts["log records (INFO+)"] = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records if r.levelno >= logging.INFO
    )
    # botocore's DEBUG wire log carries the access key *id* in the Authorization header (as the
    # AWS SDKs do); the secret key and the password must not appear even there.
    texts["log records (DEBUG)"] = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)

    secrets = {"MINIO_SECRET_KEY": SECRET_KEY, "DB_PASSWORD": DB_PASSWORD, "MINIO_ACCESS_KEY": ACCESS_KEY}
    leaks = {
        where: found for where, text in texts.items()
        if (found := _find(text, secrets if where != "log records (DEBUG)" else
                           {k: v for k, v in secrets.items() if k != "MINIO_ACCESS_KEY"}))
    }
    assert not leaks, leaks
    # The scan looked at real material: the failures are in there, readably.
    assert "check MINIO_ACCESS_KEY" in failed_rows, failed_rows
    assert "cannot connect to PostgreSQL" in error_text
    assert sum(len(t) for t in texts.values()) > 100_000
    # Positive control: the capture really sees the wire (botocore's DEBUG log signs with the id).
    assert ACCESS_KEY in texts["log records (DEBUG)"]
