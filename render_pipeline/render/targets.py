"""Which renders a run makes: the valid uploads of its partitions and their requested presets
(all of them, or for a requeue run exactly the rows requeued into it), and their bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from dagster import OpExecutionContext

from render_pipeline import imaging
from render_pipeline.keys import render_id_for
from render_pipeline.render.job import REQUEUE_RUN_TAG
from render_pipeline.resources.object_store import ObjectStore, ObjectStoreError
from render_pipeline.run_policies import with_backoff
from render_pipeline.store import renders as renders_store
from render_pipeline.store import uploads as uploads_store
from render_pipeline.store.renders import RenderTarget


def targets_of_run(
    context: OpExecutionContext, conn, style: imaging.StyleSpec, presets: Sequence[imaging.SizePreset]
) -> tuple[list[tuple[str, uploads_store.UploadRow]], dict[str, list[tuple[RenderTarget, imaging.SizePreset]]]]:
    """The valid uploads of the run and the renders it is asked for: every requested preset of
    each partition, or for a requeue run exactly the rows requested in it."""
    requested: dict[str, set[str]] | None = None
    partition_keys = list(context.partition_keys)
    if REQUEUE_RUN_TAG in context.run.tags:
        requested = {}
        for row in renders_store.requeued_for_run(conn, context.run.tags[REQUEUE_RUN_TAG], style.id):
            requested.setdefault(row["partition_key"], set()).add(row["size_preset_id"])
        partition_keys = [pk for pk in partition_keys if pk in requested]
    uploads = uploads_store.uploads_by_partition(conn, partition_keys)
    valid = [(pk, uploads[pk]) for pk in partition_keys if pk in uploads and uploads[pk].status == "valid"]
    targets = {
        pk: [(RenderTarget(render_id_for(upload.id, style.id, p.id), upload.id, style.id, p.id, upload.sha256,
                           style.version), p)
             for p in presets if requested is None or p.id in requested[pk]]
        for pk, upload in valid
    }
    return valid, targets


def partitions_of_run(context: OpExecutionContext, conn, style_id: str) -> list[str]:
    """The partitions the run reports on: all of its range, or those a requeue run renders."""
    if REQUEUE_RUN_TAG not in context.run.tags:
        return list(context.partition_keys)
    requested = {row["partition_key"] for row in
                 renders_store.requeued_for_run(conn, context.run.tags[REQUEUE_RUN_TAG], style_id)}
    return [pk for pk in context.partition_keys if pk in requested]


def fetch_validated(object_store: ObjectStore, upload: uploads_store.UploadRow) -> bytes:
    """The upload's bytes from the store, only if they are still the version validated."""
    try:
        data = with_backoff(lambda: object_store.get(upload.object_key), budget_seconds=object_store.retry_seconds,
                            retry_on=(ObjectStoreError, OSError))
    except KeyError:
        raise UploadGone("the upload object no longer exists") from None
    if upload.sha256 and hashlib.sha256(data).hexdigest() != upload.sha256:
        # The sensor sees the new ETag and requests a run that validates and renders it.
        raise UploadGone("the upload changed after it was validated; its new version is validated "
                         "and rendered by a new run")
    return data


class UploadGone(Exception):
    """The validated version of an upload can no longer be read; the message says why."""
