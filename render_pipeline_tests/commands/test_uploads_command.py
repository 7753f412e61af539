"""`render-pipeline uploads register | status`: partitions from the command line, as CI uses them."""

from __future__ import annotations

from datetime import timedelta

from render_pipeline.render.partitions import uploads_partitions
from render_pipeline_tests.imaging.inputs import jpeg
from render_pipeline_tests.maintenance.scenario import insert_asset, insert_render


def test_register_claims_the_upload_and_adds_its_partition(cli, s3_env, boto, database, instance):
    env = {**s3_env, "DAGSTER_HOME": instance.root_directory}
    boto.put_object(Bucket=s3_env["MINIO_BUCKET"], Key="uploads/ci/photo.jpg", Body=jpeg())

    registered = cli("uploads", "register", "uploads/ci/photo.jpg", env=env)
    assert registered.returncode == 0, registered.stderr
    assert "registered partition ci/photo.jpg" in registered.stdout
    assert instance.get_dynamic_partitions(uploads_partitions.name) == ["ci/photo.jpg"]
    with database.connection() as conn:
        row = conn.execute("SELECT status, etag FROM assets WHERE partition_key = 'ci/photo.jpg'").fetchone()
    assert row["status"] == "registered" and row["etag"]

    status = cli("uploads", "status", "ci/photo.jpg", env=env)
    assert status.returncode == 1  # registered, not yet validated
    assert "ci/photo.jpg: registered" in status.stdout


def test_register_refuses_missing_objects_and_hostile_keys_and_registers_nothing(cli, s3_env, database, instance):
    env = {**s3_env, "DAGSTER_HOME": instance.root_directory}
    refused = cli("uploads", "register", "uploads/ci/missing.jpg", "uploads/../etc/passwd", env=env)
    assert refused.returncode == 1
    err = refused.stderr
    assert "'uploads/ci/missing.jpg': no such object" in err and "'uploads/../etc/passwd'" in err
    assert instance.get_dynamic_partitions(uploads_partitions.name) == []
    with database.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM assets").fetchone()["n"] == 0


def test_status_says_finished_only_when_every_render_completed(cli, s3_env, database):
    with database.connection() as conn:
        asset = insert_asset(conn, "uploads/done/a.jpg")
        insert_render(conn, asset, "duotone", "completed", age=timedelta(minutes=1))
        other = insert_asset(conn, "uploads/half/a.jpg")
        insert_render(conn, other, "duotone", "failed", age=timedelta(minutes=1), error="upload: S3 put failed")
    assert cli("uploads", "status", "done/a.jpg", env=s3_env).returncode == 0
    half = cli("uploads", "status", "half/a.jpg", env=s3_env)
    assert half.returncode == 1
    assert "duotone square-1024: failed (upload: S3 put failed)" in half.stdout
