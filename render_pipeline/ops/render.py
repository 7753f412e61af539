"""The render graph's ops, one set per style: decode → preprocess → quantize → compose →
preview → upload.

Ops are thin: the image work is `render_pipeline.imaging`, the SQL is `render_pipeline.store`.
Each op handles every upload partition of the run (ranged runs render a batch), and a failure
of one render is recorded on its row and drops only that render, never the batch.
"""


import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from dagster import (
    Backoff,
    Config,
    In,
    Jitter,
    Nothing,
    OpDefinition,
    OpExecutionContext,
    Out,
    Output,
    RetryPolicy,
    op,
)
from pydantic import Field, field_validator

from render_pipeline import imaging
from render_pipeline.keys import object_key_for, render_id_for, render_object_keys
from render_pipeline.metadata import render_output_metadata
from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.object_store import ObjectStore
from render_pipeline.store import renders as renders_store
from render_pipeline.store import uploads as uploads_store
from render_pipeline.store.renders import CompletedRender, RenderTarget

RENDER_POOL = "render"
HANDOFF_IO_MANAGER = "render_handoff"
# Storage and database steps ride out MinIO timeouts and brief outages (old runbook: retry
# with exponential backoff).  Compute steps are deterministic: retrying them cannot help.
STORAGE_RETRY = RetryPolicy(max_retries=4, delay=0.5, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


@dataclass
class RenderItem:
    """One render in flight; ``payload`` is whatever the previous stage produced."""

    target: RenderTarget
    partition_key: str
    preset: imaging.SizePreset
    source: imaging.ImageInfo
    payload: Any
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Source:
    """A decoded upload and the renders wanted from it."""

    partition_key: str
    decoded: imaging.DecodedImage
    items: list[RenderItem]


def render_request_config(default_presets: list[str]) -> type[Config]:
    class RenderRequest(Config):
        """Which size presets to render (ids from the `size_presets` table)."""

        presets: list[str] = Field(default=list(default_presets), description="Size preset ids to render.")

        @field_validator("presets")
        @classmethod
        def _known_presets(cls, presets: list[str]) -> list[str]:
            unknown = [p for p in presets if p not in imaging.PRESETS]
            if unknown or not presets:
                raise ValueError(
                    f"unknown size preset(s) {unknown}; choose from {sorted(imaging.PRESETS)}"
                    if unknown else "at least one size preset is required"
                )
            return list(dict.fromkeys(presets))

    return RenderRequest


def build_render_ops(style: imaging.StyleSpec, default_presets: list[str]) -> tuple[OpDefinition, ...]:
    """The six ops of one style's render graph (names are unique per style)."""
    ident = style.id.replace("-", "_")
    algorithm_config = style.validate_config(None)
    RenderRequest = render_request_config(default_presets)

    def tags(stage: int) -> dict[str, str]:
        # Later stages outrank earlier ones, so the in-process executor finishes one style's
        # batch before decoding the next style's: a run holds one style's images at a time.
        return {"render_pipeline/style": style.id, "dagster/priority": str(stage)}

    @op(
        name=f"{ident}_decode",
        ins={"upload": In(Nothing)},
        out=Out(io_manager_key=HANDOFF_IO_MANAGER),
        retry_policy=STORAGE_RETRY,
        pool=RENDER_POOL,
        tags=tags(0),
    )
    def decode(
        context: OpExecutionContext, config: RenderRequest, database: PostgresResource, object_store: ObjectStore
    ) -> list[Source]:
        """Fetch and decode each valid upload once, for all requested presets."""
        presets = [imaging.get_preset(p) for p in config.presets]
        with database.connection() as conn:
            uploads = uploads_store.uploads_by_partition(conn, context.partition_keys)
        sources: list[Source] = []
        valid = {}
        for partition_key in context.partition_keys:
            upload = uploads.get(partition_key)
            if upload is None or upload.status != "valid":
                reason = upload.error_message if upload else "not registered yet"
                context.log.info(f"skipping {partition_key!r}: upload is not valid ({reason})")
                continue
            valid[object_key_for(partition_key)] = (partition_key, upload)
        for object_key, fetched in object_store.prefetch(list(valid)):
            partition_key, upload = valid[object_key]
            targets = [
                RenderTarget(render_id_for(upload.id, style.id, p.id), upload.id, style.id, p.id) for p in presets
            ]
            with database.connection() as conn:
                renders_store.start(conn, targets, run_id=context.run.run_id)
            started = time.perf_counter()
            try:
                data = fetched.result()
                if upload.sha256 and hashlib.sha256(data).hexdigest() != upload.sha256:
                    # Overwritten since validation: render only validated bytes.  The sensor
                    # sees the new ETag and requests a run that validates and renders it.
                    _fail(database, targets, "decode", "the upload changed after it was validated; "
                          "its new version is validated and rendered by a new run")
                    continue
                decoded = imaging.decode(data, fit=presets, grey=not style.needs_colour)
            except KeyError:
                _fail(database, targets, "decode", "the upload object no longer exists")
                continue
            except imaging.ImageRejected as exc:
                _fail(database, targets, "decode", str(exc))
                continue
            elapsed = (time.perf_counter() - started) * 1000
            items = [
                RenderItem(t, partition_key, p, decoded.info, None, {"decode": elapsed})
                for t, p in zip(targets, presets)
            ]
            sources.append(Source(partition_key, decoded, items))
        return sources

    @op(name=f"{ident}_preprocess", out=Out(io_manager_key=HANDOFF_IO_MANAGER), pool=RENDER_POOL, tags=tags(1))
    def preprocess(database: PostgresResource, sources: list[Source]) -> list[RenderItem]:
        """Fit each decoded upload to each preset (crop or pad to the exact size)."""
        items = [replace(item, payload=source.decoded) for source in sources for item in source.items]
        return _each(database, items, "preprocess", lambda item: imaging.preprocess(item.payload, item.preset))

    @op(name=f"{ident}_quantize", out=Out(io_manager_key=HANDOFF_IO_MANAGER), pool=RENDER_POOL, tags=tags(2))
    def quantize(database: PostgresResource, items: list[RenderItem]) -> list[RenderItem]:
        """Reduce each fitted image to the style's palette (fixed-seed k-means on a sample)."""
        return _each(
            database, items, "quantize",
            lambda item: (item.payload, style.quantize(item.payload, algorithm_config)),
        )

    @op(name=f"{ident}_compose", out=Out(io_manager_key=HANDOFF_IO_MANAGER), pool=RENDER_POOL, tags=tags(3))
    def compose(database: PostgresResource, items: list[RenderItem]) -> list[RenderItem]:
        """Draw the style (palette mapping, ink outlines, dots, panels) at the preset size."""
        return _each(
            database, items, "compose",
            lambda item: (style.compose(item.payload[0], item.payload[1], item.preset, algorithm_config),
                          item.payload[1]),
        )

    @op(name=f"{ident}_preview", out=Out(io_manager_key=HANDOFF_IO_MANAGER), pool=RENDER_POOL, tags=tags(4))
    def preview(database: PostgresResource, items: list[RenderItem]) -> list[RenderItem]:
        """Encode the output PNG and the 512 px JPEG preview."""

        def encode(item: RenderItem) -> Encoded:
            image, quantization = item.payload
            encoded = imaging.encode_outputs(image)
            return Encoded(
                output_png=encoded.png,
                preview_jpeg=encoded.preview_jpeg,
                pixels_sha256=encoded.pixels_sha256,
                quantization=quantization,
            )

        return _each(database, items, "preview", encode)

    @op(
        name=f"{ident}_upload",
        out=Out(io_manager_key=HANDOFF_IO_MANAGER),
        retry_policy=STORAGE_RETRY,
        tags=tags(5),
    )
    def upload(
        context: OpExecutionContext, database: PostgresResource, object_store: ObjectStore, items: list[RenderItem]
    ) -> Output[None]:
        """Write both objects under the render's deterministic keys, then mark the row completed.

        Objects first, row second: a crash in between leaves a row that a retry completes
        and objects that the same keys overwrite — never a `completed` row without objects.
        """
        started = time.perf_counter()
        object_store.put_many([
            (key, data, kind)
            for item in items
            for key, data, kind in zip(
                render_object_keys(item.target.render_id),
                (item.payload.output_png, item.payload.preview_jpeg),
                ("image/png", "image/jpeg"),
            )
        ])
        upload_ms = (time.perf_counter() - started) * 1000 / max(1, len(items))
        completed: list[tuple[RenderItem, CompletedRender]] = []
        for item in items:
            encoded: Encoded = item.payload
            output_key, preview_key = render_object_keys(item.target.render_id)
            item.timings_ms["upload"] = upload_ms
            metadata = imaging.render_metadata(
                style, item.preset, algorithm_config, info=item.source, quantization=encoded.quantization,
                pixels_sha256=encoded.pixels_sha256, timings_ms=item.timings_ms,
            )
            metadata["duration_ms"] = round(sum(item.timings_ms.values()), 2)
            metadata["partition_key"] = item.partition_key
            record = CompletedRender(
                target=item.target,
                output_key=output_key,
                preview_key=preview_key,
                output_sha256=hashlib.sha256(encoded.output_png).hexdigest(),
                output_bytes=len(encoded.output_png),
                width=item.preset.width,
                height=item.preset.height,
                style_version=style.version,
                algorithm_config=dict(algorithm_config),
                render_metadata=metadata,
            )
            with database.connection() as conn:
                renders_store.complete(conn, record)
            completed.append((item, record))
        context.log.info(f"{len(completed)} {style.id} render(s) completed")
        previews = {id(item): item.payload.preview_jpeg for item, _ in completed}
        return Output(
            None,
            metadata=render_output_metadata(
                [(record, previews[id(item)]) for item, record in completed], partitions=context.partition_keys
            ),
        )

    return decode, preprocess, quantize, compose, preview, upload


@dataclass(frozen=True)
class Encoded:
    output_png: bytes
    preview_jpeg: bytes
    pixels_sha256: str
    quantization: imaging.Quantization


def _each(
    database: PostgresResource, items: Iterable[RenderItem], stage: str, work: Callable[[RenderItem], Any]
) -> list[RenderItem]:
    """Apply one stage to every item; a failing item is recorded `failed` and dropped."""
    done: list[RenderItem] = []
    for item in items:
        started = time.perf_counter()
        try:
            payload = work(item)
        except Exception as exc:  # one bad render must not sink the batch; its row says why
            _fail(database, [item.target], stage, f"{type(exc).__name__}: {exc}")
            continue
        timings = {**item.timings_ms, stage: (time.perf_counter() - started) * 1000}
        done.append(replace(item, payload=payload, timings_ms=timings))
    return done


def _fail(database: PostgresResource, targets: list[RenderTarget], stage: str, reason: str) -> None:
    with database.connection() as conn:
        renders_store.fail(conn, [t.render_id for t in targets], f"{stage}: {reason}"[:2000])

