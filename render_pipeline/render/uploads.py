"""`uploads`: one dynamic partition per object under `uploads/{asset_id}/{filename}`.

Materializing a partition validates the object without rendering it and records the result in
`assets`.  Each partition's materialization shows its own result (format, dimensions, sha256,
or why it was refused) and its own `upload_is_valid` evaluation, which fails for a bad
upload; nothing is rendered for it.  The validated bytes are kept in the run's scratch
directory, so every style renders exactly them without fetching the object again.
"""

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    MaterializeResult,
    Output,
    asset,
)

from render_pipeline import imaging
from render_pipeline.keys import asset_id_for, object_key_for, render_id_for
from render_pipeline.render.assets import MAX_UPLOADS_PER_RUN
from render_pipeline.render.events import UPLOADS_KEY, VALID_CHECK, check_evaluations, render_asset_key, upload_check
from render_pipeline.render.metadata import upload_materialization_metadata
from render_pipeline.render.partitions import uploads_partitions
from render_pipeline.render.scratch import RenderScratch
from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.object_store import InvalidKey, ObjectInfo, ObjectStore
from render_pipeline.run_policies import STORAGE_RETRY
from render_pipeline.store import renders as renders_store
from render_pipeline.store import uploads as uploads_store
from render_pipeline.store.renders import RenderTarget

# Uploads read ahead of the one being validated (their bytes are held until it is their turn).
FETCH_AHEAD = 2


def build_uploads_asset(default_presets: Sequence[str]) -> AssetsDefinition:
    style_by_key = {render_asset_key(style_id): style_id for style_id in imaging.STYLES}
    check = AssetCheckSpec(VALID_CHECK, asset=UPLOADS_KEY, partitions_def=uploads_partitions,
                           description="The upload decodes within the limits.")

    @asset(
        key=UPLOADS_KEY,
        partitions_def=uploads_partitions,
        group_name="uploads",
        retry_policy=STORAGE_RETRY,
        backfill_policy=BackfillPolicy.multi_run(MAX_UPLOADS_PER_RUN),
        check_specs=[check],
        kinds={"s3", "postgres"},
    )
    def uploads(
        context: AssetExecutionContext, database: PostgresResource, object_store: ObjectStore, scratch: RenderScratch
    ):
        """Validate each upload (type sniffed from bytes, size and pixel limits, full decode) and
        record it in `assets`: sha256, format, dimensions, status and, if invalid, why.  Valid
        uploads get `queued` rows for the renders selected in the same run."""
        selected = context.run.asset_selection or style_by_key.keys()
        styles = [style_by_key[key] for key in selected if key in style_by_key]
        limits = imaging.DecodeLimits()
        checks = []
        for partition_key, fetched in _fetched_ahead(object_store, context.partition_keys, limits):
            facts = _validate(context, database, scratch, partition_key, fetched, limits)
            context.add_asset_metadata(upload_materialization_metadata(facts), partition_key=partition_key)
            checks.append(upload_check(facts))
            if facts["status"] == "valid" and styles:
                asset_id = asset_id_for(facts["object_key"])
                targets = [
                    RenderTarget(render_id_for(asset_id, style, preset), asset_id, style, preset, facts["sha256"],
                                 imaging.get_style(style).version)
                    for style in styles
                    for preset in default_presets
                ]
                with database.connection() as conn:
                    renders_store.queue(conn, targets, run_id=context.run.run_id)
        invalid = sum(not check.passed for check in checks)
        context.log.info(f"{len(checks) - invalid} upload(s) valid, {invalid} invalid")
        yield MaterializeResult()
        yield from check_evaluations(context.instance, UPLOADS_KEY, VALID_CHECK, checks)
        yield Output(None, output_name=check.get_python_identifier())

    return uploads


@dataclass(frozen=True)
class Fetched:
    """What the store holds for one upload, read ahead of its validation."""

    head: ObjectInfo | None = None
    data: bytes | None = None  # None when it is missing or over the size limit
    invalid_key: str | None = None  # why the store refuses the key
    deleted: bool = False  # the object went between its HEAD and its GET


def _fetched_ahead(
    object_store: ObjectStore, partition_keys: Sequence[str], limits: imaging.DecodeLimits
) -> Iterator[tuple[str, Fetched]]:
    """Each partition's object, in order, read up to FETCH_AHEAD partitions ahead of the one
    being validated: the store's latency overlaps the previous upload's decode and rows,
    and at most FETCH_AHEAD + 1 uploads' bytes are held at once."""
    fetches = object_store.prefetch([object_key_for(key) for key in partition_keys], ahead=FETCH_AHEAD,
                                    read=lambda object_key: _fetch(object_store, object_key, limits))
    for partition_key, (_object_key, fetched) in zip(partition_keys, fetches):
        yield partition_key, fetched.result()


def _fetch(object_store: ObjectStore, object_key: str, limits: imaging.DecodeLimits) -> Fetched:
    try:
        head = object_store.head(object_key)
    except InvalidKey as exc:  # e.g. a local file that is a symlink out of the store root
        return Fetched(invalid_key=str(exc))
    if head is None or head.size > limits.max_bytes:
        return Fetched(head=head)
    try:
        return Fetched(head=head, data=object_store.get(object_key))
    except KeyError:
        return Fetched(head=head, deleted=True)


def _validate(
    context: AssetExecutionContext,
    database: PostgresResource,
    scratch: RenderScratch,
    partition_key: str,
    fetched: Fetched,
    limits: imaging.DecodeLimits,
) -> dict:
    object_key = object_key_for(partition_key)
    facts: dict = {
        "partition_key": partition_key, "object_key": object_key, "status": "valid", "code": None,
        "reason": None, "format": None, "width": None, "height": None, "byte_size": None, "sha256": None,
    }
    code, etag, info_metadata = _inspect(database, scratch, limits, facts, fetched)
    if code is not None:
        facts["status"], facts["code"] = "invalid", code
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


def _inspect(
    database: PostgresResource, scratch: RenderScratch, limits: imaging.DecodeLimits, facts: dict, fetched: Fetched,
) -> tuple[str | None, str | None, dict]:
    """Probe the upload's object, filling in ``facts``: (its refusal code, None when it is
    valid; the ETag of the version judged; the metadata of what was found)."""
    partition_key, object_key, head = facts["partition_key"], facts["object_key"], fetched.head
    if fetched.invalid_key is not None:
        facts["reason"] = fetched.invalid_key
        # Keep the version the sensor registered, so the same object is not requested again.
        with database.connection() as conn:
            registered = uploads_store.uploads_by_partition(conn, [partition_key]).get(partition_key)
        return "invalid_key", registered.etag if registered else None, {}
    if head is None:
        facts["reason"] = "the object no longer exists in the store"
        return "missing", None, {}
    if head.size > limits.max_bytes:
        facts["byte_size"] = head.size
        refusal = imaging.too_large(head.size, limits.max_bytes)
        facts["reason"] = refusal.reason
        return refusal.code, head.etag, refusal.details
    if fetched.deleted:
        facts["reason"] = "the object was deleted while being validated"
        return "missing", head.etag, {}
    data = fetched.data
    facts["byte_size"] = len(data)
    facts["sha256"] = hashlib.sha256(data).hexdigest()
    try:
        info = imaging.probe(data, limits=limits)
    except imaging.ImageRejected as exc:
        facts["reason"] = exc.reason
        return exc.code, head.etag, exc.details
    facts.update(format=info.format, width=info.width, height=info.height)
    scratch.keep_source(asset_id_for(object_key), data)
    return None, head.etag, info.as_dict()
