"""`uploads`: one dynamic partition per object under `uploads/{asset_id}/{filename}`.

Materializing a partition validates the object without rendering it and records the result in
`assets`.  A bad upload is a *successful* materialization with status `invalid` and a reason
(plus a failed check), so the reason shows in the UI and in SQL and no render is attempted.
"""


import hashlib
from collections.abc import Sequence

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from render_pipeline import imaging
from render_pipeline.assets.renders import MAX_UPLOADS_PER_RUN, render_asset_key
from render_pipeline.keys import asset_id_for, object_key_for, render_id_for
from render_pipeline.partitions import uploads_partitions
from render_pipeline.metadata import markdown_cell
from render_pipeline.ops.render import STORAGE_RETRY
from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.object_store import InvalidKey, ObjectStore
from render_pipeline.store import renders as renders_store
from render_pipeline.store import uploads as uploads_store
from render_pipeline.store.renders import RenderTarget

VALID_CHECK = "upload_is_valid"


def build_uploads_asset(default_presets: Sequence[str]) -> AssetsDefinition:
    style_by_key = {render_asset_key(style_id): style_id for style_id in imaging.STYLES}

    @asset(
        partitions_def=uploads_partitions,
        group_name="uploads",
        retry_policy=STORAGE_RETRY,
        backfill_policy=BackfillPolicy.multi_run(MAX_UPLOADS_PER_RUN),
        check_specs=[AssetCheckSpec(VALID_CHECK, asset="uploads", description="The upload decodes within the limits.")],
        kinds={"s3", "postgres"},
    )
    def uploads(context: AssetExecutionContext, database: PostgresResource, object_store: ObjectStore):
        """Validate each upload (type sniffed from bytes, size and pixel limits, full decode) and
        record it in `assets`: sha256, format, dimensions, status and, if invalid, why.  Valid
        uploads get `queued` rows for the renders selected in the same run."""
        selected = context.run.asset_selection or style_by_key.keys()
        styles = [style_by_key[key] for key in selected if key in style_by_key]
        yield from _validate_all(context, database, object_store, styles, default_presets)

    return uploads


def _validate_all(
    context: AssetExecutionContext,
    database: PostgresResource,
    object_store: ObjectStore,
    styles: Sequence[str],
    default_presets: Sequence[str],
):
    limits = imaging.DecodeLimits()
    results = []
    for partition_key in context.partition_keys:
        facts = _validate(context, database, object_store, partition_key, limits)
        results.append(facts)
        if facts["status"] == "valid" and styles:
            asset_id = asset_id_for(facts["object_key"])
            targets = [
                RenderTarget(render_id_for(asset_id, style, preset), asset_id, style, preset)
                for style in styles
                for preset in default_presets
            ]
            with database.connection() as conn:
                renders_store.queue(conn, targets, run_id=context.run.run_id)

    invalid = [r for r in results if r["status"] == "invalid"]
    rows = ["| upload | status | format | size | bytes | reason |", "|---|---|---|---|---|---|"]
    for r in results[:50]:
        rows.append(
            f"| {markdown_cell(r['partition_key'])} | {r['status']} | {r['format'] or ''} | "
            f"{r['width'] or ''}×{r['height'] or ''} | {r['byte_size'] or ''} | {markdown_cell(r['reason'] or '')} |"
        )
    metadata = {
        "valid": MetadataValue.int(len(results) - len(invalid)),
        "invalid": MetadataValue.int(len(invalid)),
        "uploads": MetadataValue.md("\n".join(rows)),
    }
    if len(results) == 1:
        only = results[0]
        metadata.update(
            {
                "status": MetadataValue.text(only["status"]),
                "object_key": MetadataValue.text(only["object_key"]),
                "sha256": MetadataValue.text(only["sha256"] or ""),
                "reason": MetadataValue.text(only["reason"] or ""),
            }
        )
    yield MaterializeResult(metadata=metadata)
    yield AssetCheckResult(
        check_name=VALID_CHECK,
        passed=not invalid,
        severity=AssetCheckSeverity.WARN,
        description=(
            "; ".join(f"{r['partition_key']}: {r['reason']}" for r in invalid[:10])[:1000]
            if invalid else "every upload decodes within the limits"
        ),
        metadata={"invalid": MetadataValue.int(len(invalid))},
    )


def _validate(
    context: AssetExecutionContext,
    database: PostgresResource,
    object_store: ObjectStore,
    partition_key: str,
    limits: imaging.DecodeLimits,
) -> dict:
    object_key = object_key_for(partition_key)
    facts: dict = {
        "partition_key": partition_key, "object_key": object_key, "status": "valid", "reason": None,
        "format": None, "width": None, "height": None, "byte_size": None, "sha256": None,
    }
    code: str | None = None
    etag: str | None = None
    info_metadata: dict = {}
    try:
        head = object_store.head(object_key)
    except InvalidKey as exc:  # e.g. a local file that is a symlink out of the store root
        code, facts["reason"] = "invalid_key", str(exc)
        # Keep the version the sensor registered, so the same object is not requested again.
        with database.connection() as conn:
            registered = uploads_store.uploads_by_partition(conn, [partition_key]).get(partition_key)
        etag = registered.etag if registered else None
    else:
        if head is None:
            code, facts["reason"] = "missing", "the object no longer exists in the store"
        elif head.size > limits.max_bytes:
            etag, facts["byte_size"] = head.etag, head.size
            code = "too_large"
            facts["reason"] = f"the file is {head.size} bytes; the limit is {limits.max_bytes}"
        else:
            etag = head.etag
            try:
                data = object_store.get(object_key)
            except KeyError:
                code, facts["reason"] = "missing", "the object was deleted while being validated"
            else:
                facts["byte_size"] = len(data)
                facts["sha256"] = hashlib.sha256(data).hexdigest()
                try:
                    info = imaging.probe(data, limits=limits)
                except imaging.ImageRejected as exc:
                    code, facts["reason"] = exc.code, exc.reason
                else:
                    facts.update(format=info.format, width=info.width, height=info.height)
                    info_metadata = info.as_dict()
    if code is not None:
        facts["status"] = "invalid"
        context.log.warning(f"upload {partition_key!r} is invalid: {code}: {facts['reason']}")
    with database.connection() as conn:
        uploads_store.record_validation(
            conn,
            asset_id=asset_id_for(object_key),
            partition_key=partition_key,
            object_key=object_key,
            etag=etag,
            byte_size=facts["byte_size"],
            sha256=facts["sha256"],
            image_format=facts["format"],
            width=facts["width"],
            height=facts["height"],
            error_code=code,
            error_message=facts["reason"],
            metadata=info_metadata,
            run_id=context.run.run_id,
        )
    return facts

