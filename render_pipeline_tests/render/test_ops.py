"""The render ops on a real database and store: one render the store refuses fails alone, with a
reason that groups, and a requeue completes it once the store is back."""

from __future__ import annotations

from render_pipeline.store import maintenance as maintenance_store
from render_pipeline_tests.orchestration_helpers import (
    definitions_for,
    execute,
    jpeg_bytes,
    renders_of_upload,
    run_all,
    tick,
)


def test_storage_failure_is_retried_then_recorded_failed_and_requeue_completes_it(
    database, database_url, tmp_path, instance, monkeypatch
):
    root = tmp_path / "objects"
    env = {"DATABASE_URL": database_url, "LOCAL_STORE_ROOT": str(root), "RENDER_DEFAULT_STYLES": "duotone"}
    monkeypatch.setenv("DATABASE_URL", database_url)
    defs = definitions_for(env, presets=("play-feature",))
    (root / "uploads" / "f").mkdir(parents=True)
    (root / "uploads" / "f" / "photo.jpg").write_bytes(jpeg_bytes(seed=4))
    (root / "renders").write_bytes(b"")  # a file where the renders/ folder must go: every put fails

    result = tick(defs, instance, "uploads_sensor")
    [outcome] = [execute(defs, instance, request) for request in result.run_requests]
    assert outcome.success  # the batch goes on; only the render the store refused fails
    [row] = renders_of_upload(database, "uploads/f/photo.jpg")
    assert row["status"] == "failed" and row["dagster_run_id"] == outcome.run_id
    # the OS error without the file name (a temporary path), so such failures group by message
    assert row["error_message"] == "upload: NotADirectoryError: Not a directory", row["error_message"]

    # The fault clears; the operator requeues; the requeue sensor launches a run that completes it.
    (root / "renders").unlink()
    with database.connection() as conn:
        assert maintenance_store.requeue(conn, [row["id"]], reason="storage fixed") == [row["id"]]
    requeue = tick(defs, instance, "requeue_sensor")
    assert len(requeue.run_requests) == 1
    run_all(defs, instance, requeue)
    [row] = renders_of_upload(database, "uploads/f/photo.jpg")
    assert row["status"] == "completed" and row["attempt"] == 2
    assert not tick(defs, instance, "requeue_sensor").run_requests
