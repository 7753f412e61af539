"""One graph-backed render asset per style, partitioned like `uploads`.

`renders/pop-poster` etc.: decode → preprocess → quantize → compose → preview → upload.  The
style's version is the asset's code version, so changing a style marks its renders stale in
the UI and a backfill refreshes them.  Its `presets_complete` check is evaluated by the
upload op, partition by partition (see ``render_pipeline.render.events``).
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import (
    AssetCheckSpec,
    AssetIn,
    AssetsDefinition,
    BackfillPolicy,
    ConfigMapping,
    MetadataValue,
    Nothing,
    graph_asset,
)

from render_pipeline import imaging
from render_pipeline.render.events import PRESETS_CHECK, render_asset_key
from render_pipeline.render.ops import build_render_ops, render_request_config
from render_pipeline.render.partitions import uploads_partitions

# Uploads per run in a backfill: a run's memory no longer grows with its batch, so this only
# trades Dagster's per-run start-up against how many runs share the two run slots.
MAX_UPLOADS_PER_RUN = 32


def build_render_asset(style: imaging.StyleSpec, default_presets: Sequence[str]) -> AssetsDefinition:
    key = render_asset_key(style.id)
    check = AssetCheckSpec(
        PRESETS_CHECK,
        asset=key,
        partitions_def=uploads_partitions,
        description="Each requested preset has a completed render at its exact size, written by the run.",
    )
    decode, preprocess, quantize, compose, preview, upload = build_render_ops(
        style, default_presets, check.get_python_identifier()
    )
    RenderRequest = render_request_config(default_presets)

    def to_op_config(request: dict) -> dict:
        presets = {"config": {"presets": request["presets"]}}
        return {decode.name: presets, upload.name: presets}

    @graph_asset(
        key=key,
        description=f"{style.name}: {style.description}",
        ins={"uploads": AssetIn(key="uploads", dagster_type=Nothing)},
        partitions_def=uploads_partitions,
        group_name="renders",
        code_version=f"{style.id}@{style.version}",
        backfill_policy=BackfillPolicy.multi_run(MAX_UPLOADS_PER_RUN),
        check_specs=[check],
        config=ConfigMapping(config_fn=to_op_config, config_schema=RenderRequest.to_config_schema()),
        tags={"render_pipeline/style": style.id},
        kinds={"python", "s3"},
        metadata={"style_version": style.version, "default_presets": MetadataValue.json(list(default_presets))},
    )
    def render_asset(uploads):
        result, checked = upload(preview(compose(quantize(preprocess(decode(uploads))))))
        return {"result": result, check.get_python_identifier(): checked}

    return render_asset
