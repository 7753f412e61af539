"""The storage-usage asset: bytes and objects per prefix of the object store."""

from __future__ import annotations

from dagster import AssetKey, materialize

from render_pipeline.maintenance.storage_usage import storage_usage
from render_pipeline_tests.maintenance.scenario import put_all


def test_storage_usage_asset_records_bytes_per_prefix(local_store, instance):
    put_all(local_store, [("uploads/a/1.jpg", b"x" * 100), ("uploads/b/2.jpg", b"x" * 50),
                          ("renders/r/output.png", b"y" * 1000), ("misc/readme.txt", b"z" * 7)])
    result = materialize([storage_usage], resources={"object_store": local_store}, instance=instance)
    assert result.success
    event = instance.get_latest_materialization_event(AssetKey("storage_usage"))
    metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert metadata == {
        "uploads_bytes": 150, "uploads_objects": 2, "renders_bytes": 1000, "renders_objects": 1,
        "other_bytes": 7, "other_objects": 1, "total_bytes": 1157,
    }
