"""Retention cleanup on seeded data: exactly the expired renders are archived, their objects
deleted, old failures flagged; dry runs, crashes and storage outages leave a consistent state."""

from __future__ import annotations

import logging
import time
import uuid
from typing import ClassVar
from datetime import timedelta

import pytest
from dagster import DagsterInstance
from pydantic import PrivateAttr

from render_pipeline.maintenance.jobs import retention_cleanup_job
from render_pipeline.keys import render_object_keys
from render_pipeline.maintenance.retention import RetentionConfig, run_retention
from render_pipeline.resources.object_store import DeleteResult, LocalObjectStore, S3ObjectStore
from render_pipeline_tests.conftest import make_s3_store
from render_pipeline_tests.maintenance.scenario import (
    PNG,
    STYLES,
    all_keys,
    insert_asset,
    insert_render,
    put_all,
    seed_standard,
    snapshot,
    statuses,
)

LOG = logging.getLogger("test")


def _run_job(database, store, instance, **config):
    return retention_cleanup_job.execute_in_process(
        run_config={"ops": {"retention_cleanup": {"config": config}}},
        resources={"database": database, "object_store": store},
        instance=instance,
        raise_on_error=False,
    )


def _metadata(result) -> dict:
    [event] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in event.event_specific_data.metadata.items()}


def _flagged(database) -> int:
    with database.connection() as conn:
        return conn.execute("SELECT count(*) AS n FROM renders WHERE metadata ? 'archived'").fetchone()["n"]


def test_archives_exactly_the_expired_renders(database, s3_store, seeded, instance: DagsterInstance):
    before = all_keys(s3_store)
    started = time.perf_counter()
    result = _run_job(database, s3_store, instance, batch_size=64)
    elapsed = time.perf_counter() - started
    assert result.success
    report = _metadata(result)
    assert report["expired_renders"] == 300
    assert report["archived_renders"] == 300
    assert report["objects_deleted"] == 600
    assert report["delete_errors"] == 0
    assert report["failed_flagged_archived"] == 60
    assert report["batches"] == 5  # 64 × 4 + 44
    print(f"retention of 300/1000 renders over S3: {elapsed:.2f}s")

    assert statuses(database, seeded.expired) == {"archived": 300}
    assert statuses(database, seeded.live + seeded.missing) == {"completed": 540}
    assert statuses(database, seeded.failed_old + seeded.failed_recent) == {"failed": 100}
    assert _flagged(database) == 60
    expired_keys = {k for rid in seeded.expired for k in render_object_keys(rid)}
    assert all_keys(s3_store) == before - expired_keys

    again = _metadata(_run_job(database, s3_store, instance, batch_size=64))
    assert again["expired_renders"] == again["archived_renders"] == again["failed_flagged_archived"] == 0


def test_dry_run_reports_and_changes_nothing(database, s3_store, seeded, instance):
    before_rows, before_keys = snapshot(database), all_keys(s3_store)
    result = _run_job(database, s3_store, instance, dry_run=True)
    report = _metadata(result)
    assert (report["expired_renders"], report["archived_renders"], report["objects_deleted"]) == (300, 0, 0)
    assert report["failed_flagged_archived"] == 60  # would be flagged
    assert snapshot(database) == before_rows
    assert all_keys(s3_store) == before_keys


class Killed(BaseException):
    """Stands for the process being killed: nothing after it runs, no handler catches it."""


class KilledAfterDelete(LocalObjectStore):
    """Deletes for real, then 'dies' right after the given delete call — before the
    transaction that archives those renders can commit (the worst moment)."""

    die_on_call: int = 2
    _calls: int = PrivateAttr(default=0)

    def delete_many(self, keys) -> DeleteResult:
        result = super().delete_many(keys)
        self._calls += 1
        if self._calls == self.die_on_call:
            raise Killed()
        return result


def test_killed_half_way_then_rerun_finishes_without_losing_rows(database, tmp_path):
    root = str(tmp_path / "objects")
    seeded = seed_standard(database, LocalObjectStore(root=root))
    before = all_keys(LocalObjectStore(root=root))
    config = RetentionConfig(batch_size=50)

    with pytest.raises(Killed):
        run_retention(database, KilledAfterDelete(root=root, die_on_call=3), config, LOG)
    # Two batches committed; the third deleted its objects but its rows were rolled back.
    assert statuses(database, seeded.expired) == {"archived": 100, "completed": 200}
    assert len(before - all_keys(LocalObjectStore(root=root))) == 300

    report = run_retention(database, LocalObjectStore(root=root), config, LOG)
    assert report.archived_renders == 200 and report.delete_errors == 0
    assert statuses(database, seeded.expired) == {"archived": 300}
    assert statuses(database, seeded.live + seeded.missing) == {"completed": 540}
    expired_keys = {k for rid in seeded.expired for k in render_object_keys(rid)}
    assert all_keys(LocalObjectStore(root=root)) == before - expired_keys


class StopsServerAfterFirstDelete(S3ObjectStore):
    """The S3 endpoint goes away after the first DeleteObjects call (a real outage)."""

    server: ClassVar[object] = None  # Dagster copies resources, so not an instance attribute
    _calls: int = PrivateAttr(default=0)

    def delete_many(self, keys) -> DeleteResult:
        result = super().delete_many(keys)
        self._calls += 1
        if self._calls == 1:
            type(self).server.stop()
        return result


def test_object_store_outage_mid_run_leaves_db_consistent(database, instance):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    bucket = f"outage-{uuid.uuid4().hex[:8]}"
    healthy = make_s3_store(f"http://{host}:{port}", bucket)
    healthy.client.create_bucket(Bucket=bucket)
    with database.transaction() as conn:
        asset_ids = [insert_asset(conn, f"uploads/outage-{i}/a.png") for i in range(10)]
        expired = [insert_render(conn, asset_ids[n // 4], STYLES[n % 4], "completed",
                                 age=timedelta(days=200)) for n in range(40)]
    put_all(healthy, [(key, PNG) for rid in expired for key in render_object_keys(rid)])

    flaky = StopsServerAfterFirstDelete(
        s3=make_s3_store(f"http://{host}:{port}", bucket, max_attempts=1, connect_timeout=1.0).s3, bucket=bucket)
    StopsServerAfterFirstDelete.server = server
    result = _run_job(database, flaky, instance, batch_size=10)
    assert not result.success  # the run fails loudly ...
    with database.connection() as conn:
        archived = [row["id"] for row in conn.execute(
            "SELECT id FROM renders WHERE id = ANY(%s) AND status = 'archived'", (expired,)).fetchall()]
    assert len(archived) == 10  # ... having archived only the batch whose objects were deleted

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()  # the same in-process S3 state, back on a new port
    try:
        host, port = server.get_host_and_port()
        store = make_s3_store(f"http://{host}:{port}", bucket)
        remaining = all_keys(store)
        assert remaining == {k for rid in expired if rid not in archived for k in render_object_keys(rid)}
        rerun = _metadata(_run_job(database, store, instance, batch_size=10))
        assert rerun["archived_renders"] == 30 and rerun["objects_deleted"] == 60
        assert statuses(database, expired) == {"archived": 40}
        assert all_keys(store) == set()
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"retention_days": 0}, "retention_days must be between 1 and 3650 days (got 0)"),
        ({"failed_archive_days": 5000}, "failed_archive_days must be between 1 and 3650 days (got 5000)"),
        ({"batch_size": 501}, "batch_size must be between 1 and 500 (got 501)"),
    ],
)
def test_out_of_range_config_is_rejected_before_any_change(database, local_store, instance, config, message):
    with database.transaction() as conn:
        asset_id = insert_asset(conn, "uploads/x/a.png")
        render_id = insert_render(conn, asset_id, "duotone", "completed", age=timedelta(days=400))
    result = _run_job(database, local_store, instance, **config)
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert message in failure.event_specific_data.error.message
    assert statuses(database, [render_id]) == {"completed": 1}
