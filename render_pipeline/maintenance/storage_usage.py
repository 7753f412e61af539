"""`storage_usage`: bytes and object counts per top-level prefix of the object store (`mc du`).

Materialized hourly; its numeric metadata plots over time in the asset's UI page, and the
metrics exporter reads the latest materialization for `render_storage_bytes_total`.
"""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from render_pipeline.keys import RENDERS_PREFIX, UPLOADS_PREFIX
from render_pipeline.resources.object_store import ObjectStore

PREFIXES = {"uploads": UPLOADS_PREFIX, "renders": RENDERS_PREFIX}


def measure(object_store: ObjectStore) -> dict[str, tuple[int, int]]:
    """(objects, bytes) per prefix name, plus "other" for keys outside the known prefixes."""
    usage = {name: (0, 0) for name in (*PREFIXES, "other")}
    for obj in object_store.iter_objects(""):
        name = next((n for n, prefix in PREFIXES.items() if obj.key.startswith(prefix)), "other")
        count, size = usage[name]
        usage[name] = (count + 1, size + obj.size)
    return usage


def usage_metadata(usage: dict[str, tuple[int, int]]) -> dict[str, MetadataValue]:
    metadata: dict[str, MetadataValue] = {}
    for name, (count, size) in usage.items():
        metadata[f"{name}_bytes"] = MetadataValue.int(size)
        metadata[f"{name}_objects"] = MetadataValue.int(count)
    metadata["total_bytes"] = MetadataValue.int(sum(size for _, size in usage.values()))
    return metadata


@asset(
    group_name="maintenance",
    kinds={"s3"},
    description="Bytes and object counts per prefix (uploads/, renders/, other) of the object store.",
)
def storage_usage(context: AssetExecutionContext, object_store: ObjectStore) -> MaterializeResult:
    usage = measure(object_store)
    context.log.info(", ".join(f"{name}: {count} objects, {size} bytes" for name, (count, size) in usage.items()))
    return MaterializeResult(metadata=usage_metadata(usage))
