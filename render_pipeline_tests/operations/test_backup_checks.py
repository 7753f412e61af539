"""Backup and restore against configured servers (DATABASE_URL, DAGSTER_PG_URL), and every bad
input refused with one line before anything changes."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterRun, DagsterRunStatus, instance_for_test
from psycopg import sql
from psycopg.conninfo import make_conninfo

from render_pipeline import cli
from render_pipeline.keys import render_id_for, render_object_keys
from render_pipeline.operations.backup import (
    APP_DUMP,
    CHECKSUMS,
    DAGSTER_DUMP,
    INVENTORY,
    MANIFEST,
    BackupError,
    backup,
)
from render_pipeline.operations.postgres_tools import Database
from render_pipeline.operations.restore import restore
from render_pipeline.stack import StackRunning
from render_pipeline.resources.embedded_postgres import dagster_storage_url
from render_pipeline.resources.factory import object_store_from_settings
from render_pipeline.settings import load_settings
from render_pipeline.stack import DatabaseUrls, new_record, write_record
from render_pipeline.store import migrations
from render_pipeline_tests.conftest import s3_settings
from render_pipeline_tests.live_stack import plain_storage

PASSWORD = "pw-" + uuid.uuid4().hex
EXECUTING_RUN = str(uuid.uuid4())  # a run the backup catches executing


@pytest.fixture
def servers(pg_admin_url, tmp_path):
    """An app and a Dagster database owned by a role with a password (so it must travel)."""
    role, app, dagster = (f"drill_{uuid.uuid4().hex[:10]}" for _ in range(3))
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(PASSWORD)))
        for name in (app, dagster):
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(role)))
    admin = make_conninfo(pg_admin_url, user=role, password=PASSWORD)
    yield make_conninfo(admin, dbname=app), dagster_storage_url(admin, dagster)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        for name in (app, dagster):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture(params=["local", "s3"])
def stack(request, servers, tmp_path, monkeypatch):
    """Settings for a stack on those servers, schema applied, uploads, renders and a partition."""
    return _prepare_stack(request, request.param, servers, tmp_path, monkeypatch)


@pytest.fixture
def local_stack(request, servers, tmp_path, monkeypatch):
    """The same on the local store only: the refusals do not depend on the store."""
    return _prepare_stack(request, "local", servers, tmp_path, monkeypatch)


def _prepare_stack(request, kind: str, servers, tmp_path, monkeypatch):
    app_url, dagster_url = servers
    env = {"DATABASE_URL": app_url, "DAGSTER_PG_URL": dagster_url, "RENDER_PIPELINE_HOME": str(tmp_path / "home")}
    if kind == "s3":
        env |= s3_settings(request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # for the CLI, which reads the environment
    settings = load_settings(env)
    from render_pipeline.commands.up import prepare

    prepare(settings)
    store = object_store_from_settings(settings.object_store)
    for index in range(2):
        store.put(f"uploads/a{index}/photo.jpg", b"jpeg bytes %d" % index)
    asset_id = uuid.uuid4()
    _sql(app_url, "INSERT INTO assets (id, partition_key, object_key, filename, status) "
                  "VALUES (%s, 'a0/photo.jpg', 'uploads/a0/photo.jpg', 'photo.jpg', 'registered')", (asset_id,))
    for style in ("duotone", "halftone"):  # both completed; only halftone's objects are in the bucket
        render_id = render_id_for(asset_id, style, "square-1024")
        output, preview = render_object_keys(render_id)
        _sql(app_url, "INSERT INTO renders (id, asset_id, style_id, size_preset_id, status, output_minio_key, "
                      "preview_minio_key, completed_at) VALUES (%s, %s, %s, 'square-1024', 'completed', %s, %s, "
                      "now() - interval '1 minute')", (render_id, asset_id, style, output, preview))
        if style == "halftone":
            store.put(output, b"png")
            store.put(preview, b"jpeg")
    with _instance(dagster_url) as instance:
        instance.add_dynamic_partitions("uploads", ["a0/photo.jpg"])
        instance.add_run(DagsterRun(job_name="render_uploads", run_id=EXECUTING_RUN, status=DagsterRunStatus.STARTED))
    return settings, store, app_url, dagster_url


def _sql(url: str, statement: str, params=()):
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else None


def _instance(dagster_url: str):
    return instance_for_test(overrides=plain_storage(dagster_url), set_dagster_home=False)


def _state(app_url: str, dagster_url: str) -> tuple:
    with _instance(dagster_url) as instance:
        partitions = sorted(instance.get_dynamic_partitions("uploads"))
    return _sql(app_url, "SELECT object_key FROM assets ORDER BY 1"), partitions


def test_backup_and_restore_on_configured_servers(stack, tmp_path, capsys):
    settings, store, app_url, dagster_url = stack
    destination = tmp_path / "backup"
    result = backup(settings, destination, say=lambda line: None)
    manifest = result.manifest

    assert sorted(p.name for p in destination.iterdir()) == sorted([APP_DUMP, DAGSTER_DUMP, INVENTORY, MANIFEST,
                                                                    CHECKSUMS])
    for line in (destination / CHECKSUMS).read_text().splitlines():  # `sha256sum -c` agrees
        digest, name = line.split("  ")
        assert hashlib.sha256((destination / name).read_bytes()).hexdigest() == digest
    assert manifest["app_database"]["counts"]["assets"] == 1 and manifest["schema_version"] == migrations.latest_version()
    assert manifest["object_store"]["by_prefix"] == {"renders/": 2, "uploads/": 2}
    with gzip.open(destination / INVENTORY, "rt") as lines:
        inventory = [json.loads(line) for line in lines]
    assert {(e["key"], e["etag"]) for e in inventory} == {(o.key, o.etag) for o in store.iter_objects("")}
    everything = "".join(p.read_bytes().decode("latin-1") for p in destination.iterdir()) + str(destination)
    assert PASSWORD not in everything and PASSWORD not in Database.from_conninfo(app_url).conninfo

    saved = _state(app_url, dagster_url)
    _sql(app_url, "DELETE FROM renders; DELETE FROM assets")
    with _instance(dagster_url) as instance:
        instance.delete_dynamic_partition("uploads", "a0/photo.jpg")
        instance.add_dynamic_partitions("uploads", ["after/backup.jpg"])
    store.put("uploads/a2/new.jpg", b"after the backup")

    assert cli.main(["restore", str(destination)]) == 0
    output = capsys.readouterr().out
    assert _state(app_url, dagster_url) == saved
    renders = dict(_sql(app_url, "SELECT style_id, status FROM renders"))
    assert renders == {"duotone": "queued", "halftone": "completed"}  # the lost one requeued, for the sensor
    assert "1 completed render(s) had lost their objects: failed and requeued" in output
    with _instance(dagster_url) as instance:  # its worker is gone: failed, so its slot frees and it is retried
        assert instance.get_run_by_id(EXECUTING_RUN).status == DagsterRunStatus.FAILURE
    assert "1 run(s) executing at backup time were marked failed" in output
    assert "0 gone, 0 changed, 1 (uploads/ 1) new since the backup" in output
    # Both uploads without a settled row (the registered one was requested never).
    assert "the uploads sensor renders 3 upload(s)" in output
    assert PASSWORD not in output


@pytest.fixture
def backed_up(local_stack, tmp_path):
    """A backup, then a change after it that a refused restore must leave in place."""
    settings, store, app_url, dagster_url = local_stack
    destination = tmp_path / "good"
    backup(settings, destination, say=lambda line: None)
    _sql(app_url, "INSERT INTO assets (id, partition_key, object_key, filename, status) "
                  "VALUES (%s, 'late/x.jpg', 'uploads/late/x.jpg', 'x.jpg', 'registered')", (uuid.uuid4(),))
    state = _state(app_url, dagster_url)
    yield settings, destination, store
    assert _state(app_url, dagster_url) == state, "a refused restore changed the databases"


def _copy(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / f"copy-{uuid.uuid4().hex[:6]}"
    shutil.copytree(source, target)
    return target


def _rewrite_manifest(backup_dir: Path, change) -> None:
    """Edit the manifest and make SHA256SUMS agree, as a careful tamperer would."""
    manifest = json.loads((backup_dir / MANIFEST).read_text())
    change(manifest)
    (backup_dir / MANIFEST).write_text(json.dumps(manifest))
    lines = (backup_dir / CHECKSUMS).read_text().splitlines()
    digest = hashlib.sha256((backup_dir / MANIFEST).read_bytes()).hexdigest()
    (backup_dir / CHECKSUMS).write_text("\n".join([f"{digest}  {MANIFEST}", *lines[1:]]) + "\n")


def _refused(settings, source: Path, pattern: str) -> None:
    with pytest.raises((BackupError, StackRunning), match=pattern):
        restore(settings, source, say=lambda line: None)


def test_restore_refuses_a_missing_or_damaged_backup(backed_up, tmp_path):
    settings, good, _ = backed_up
    _refused(settings, tmp_path / "nope", "backup directory .* does not exist")

    truncated = _copy(good, tmp_path)
    with (truncated / APP_DUMP).open("r+b") as dump:
        dump.truncate((truncated / APP_DUMP).stat().st_size // 2)
    _refused(settings, truncated, r"app.dump is \d+ bytes, the manifest says \d+: the backup is truncated or damaged")

    edited = _copy(good, tmp_path)
    manifest = json.loads((edited / MANIFEST).read_text())
    manifest["app_database"]["counts"]["assets"] = 1000
    (edited / MANIFEST).write_text(json.dumps(manifest))
    _refused(settings, edited, "does not match its checksum in SHA256SUMS: the manifest was changed")

    swapped = _copy(good, tmp_path)
    shutil.copyfile(swapped / DAGSTER_DUMP, swapped / APP_DUMP)
    _refused(settings, swapped, "app.dump is .* bytes|app.dump does not match the sha256 in the manifest")

    garbage = _copy(good, tmp_path)
    (garbage / APP_DUMP).write_bytes(b"PGDMP" + os.urandom(2000))
    _rewrite_manifest(garbage, lambda m: m["files"][APP_DUMP].update(
        bytes=2005, sha256=hashlib.sha256((garbage / APP_DUMP).read_bytes()).hexdigest()))
    _refused(settings, garbage, "app.dump is not a readable dump")

    lying = _copy(good, tmp_path)  # consistent checksums, but counts the dump does not hold
    _rewrite_manifest(lying, lambda m: m["app_database"]["counts"].update(assets=1000))
    _refused(settings, lying, "app.dump restored with counts .* the manifest says .*: nothing was changed")


def test_restore_refuses_a_running_stack_and_a_foreign_bucket(backed_up, tmp_path):
    settings, good, store = backed_up
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "render-pipeline", "up"])
    try:
        record = new_record(settings, DatabaseUrls("host=/nowhere", "host=/nowhere"), "http://127.0.0.1:3000")
        write_record(settings.home, dataclasses.replace(record, pid=stand_in.pid))
        _refused(settings, good, rf"the stack is running \(`render-pipeline up`, pid {stand_in.pid}")
    finally:
        stand_in.kill()
        stand_in.wait()
    # The recorded process is gone: the stack counts as stopped.
    for obj in list(store.iter_objects("")):
        store.delete(obj.key)
    _refused(settings, good, "holds none of the 4 objects in the backup's inventory")


def test_backup_refuses_an_existing_destination_in_one_line(local_stack, tmp_path, capsys):
    existing = tmp_path / "taken"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    assert cli.main(["backup", str(existing)]) == 1
    assert capsys.readouterr().err == f"error: {existing} already exists: a backup is written into a new directory\n"
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "an incomplete backup was left behind"
