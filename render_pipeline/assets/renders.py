"""One graph-backed render asset per style, partitioned like `uploads`.

`renders/pop_poster` etc.: decode → preprocess → quantize → compose → preview → upload.  The
style's version is the asset's code version, so changing a style marks its renders stale in
the UI and a backfill refreshes them.
"""


from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetIn,
    AssetKey,
    AssetChecksDefinition,
    AssetsDefinition,
    BackfillPolicy,
    ConfigMapping,
    MetadataValue,
    Nothing,
    asset_check,
    graph_asset,
)

from render_pipeline import imaging
from render_pipeline.partitions import uploads_partitions
from render_pipeline.keys import asset_id_for, object_key_for
from render_pipeline.metadata import markdown_cell
from render_pipeline.ops.render import build_render_ops, render_request_config
from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.object_store import ObjectStore
from render_pipeline.store import renders as renders_store

# Uploads per run in a backfill: big enough to amortise a run's start-up, small enough that a
# run's in-memory batch (two stages of decoded and fitted images) stays bounded.
MAX_UPLOADS_PER_RUN = 16
PRESETS_CHECK = "presets_complete"


def render_asset_key(style_id: str) -> AssetKey:
    return AssetKey(["renders", style_id.replace("-", "_")])


def build_render_asset(style: imaging.StyleSpec, default_presets: list[str]) -> AssetsDefinition:
    decode, preprocess, quantize, compose, preview, upload = build_render_ops(style, default_presets)
    RenderRequest = render_request_config(default_presets)

    def to_op_config(request: dict) -> dict:
        return {decode.name: {"config": {"presets": request["presets"]}}}

    @graph_asset(
        key=render_asset_key(style.id),
        description=f"{style.name}: {style.description}",
        ins={"uploads": AssetIn(key="uploads", dagster_type=Nothing)},
        partitions_def=uploads_partitions,
        group_name="renders",
        code_version=f"{style.id}@{style.version}",
        backfill_policy=BackfillPolicy.multi_run(MAX_UPLOADS_PER_RUN),
        config=ConfigMapping(config_fn=to_op_config, config_schema=RenderRequest.to_config_schema()),
        tags={"render_pipeline/style": style.id},
        kinds={"python", "s3"},
        metadata={"style_version": style.version, "default_presets": MetadataValue.json(default_presets)},
    )
    def render_asset(uploads):
        return upload(preview(compose(quantize(preprocess(decode(uploads))))))

    return render_asset


def build_presets_check(style: imaging.StyleSpec) -> AssetChecksDefinition:
    """Every rendered preset of each upload in the run has a completed row whose objects exist
    at the preset's exact dimensions."""

    @asset_check(
        asset=render_asset_key(style.id),
        name=PRESETS_CHECK,
        partitions_def=uploads_partitions,
        description="Each render row is completed, its objects exist, and its size is the preset's.",
    )
    def presets_complete(
        context: AssetCheckExecutionContext, database: PostgresResource, object_store: ObjectStore
    ) -> AssetCheckResult:
        partition_keys = context.op_execution_context.partition_keys
        asset_ids = [asset_id_for(object_key_for(pk)) for pk in partition_keys]
        with database.connection() as conn:
            rows = renders_store.rows_for(conn, asset_ids, style.id)
        stored = object_store.head_many([
            row[column] for row in rows if row["status"] == "completed"
            for column in ("output_minio_key", "preview_minio_key")
        ])
        problems = []
        for row in rows:
            if row["status"] != "completed":
                problems.append(f"{row['size_preset_id']}: {row['status']} ({row['error_message'] or 'no reason'})")
            elif (row["width"], row["height"]) != (row["preset_width"], row["preset_height"]):
                problems.append(f"{row['size_preset_id']}: {row['width']}×{row['height']} is not the preset size")
            elif stored[row["output_minio_key"]] is None or stored[row["preview_minio_key"]] is None:
                problems.append(f"{row['size_preset_id']}: output or preview object missing")
        return AssetCheckResult(
            passed=not problems,
            metadata={
                "renders": MetadataValue.int(len(rows)),
                "problems": MetadataValue.md("\n".join(f"- {markdown_cell(p)}" for p in problems[:20]) or "none"),
            },
        )

    return presets_complete
