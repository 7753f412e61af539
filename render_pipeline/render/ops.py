"""The render graph's ops, one set per style: decode → preprocess → quantize → compose →
preview → upload.

Each op does its own stage for every upload partition of the run (ranged runs render a
batch), one item at a time: it loads the item's images from the run's scratch directory,
works, spills its result and moves on, so memory does not grow with the batch.  A failure of
one render is recorded on its row and drops only that render.  The image work is
``render_pipeline.imaging``, the SQL ``render_pipeline.store``; the upload op reports each
partition's outcome to Dagster (``render_pipeline.render.events``).
"""

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
from dagster import (
    Config,
    In,
    Nothing,
    OpDefinition,
    OpExecutionContext,
    Out,
    Output,
    op,
)
from PIL import Image
from pydantic import Field, field_validator

from render_pipeline import imaging
from render_pipeline.keys import asset_id_for, object_key_for, render_object_keys
from render_pipeline.render import events, failures
from render_pipeline.render.handoff import HANDOFF_IO_MANAGER
from render_pipeline.render.job import REQUEUE_RUN_TAG
from render_pipeline.render.scratch import RenderScratch, SpilledArray
from render_pipeline.render.stages import Composed, DecodedSource, Encoded, Fitted, Quantized, RenderJob
from render_pipeline.render.targets import UploadGone, fetch_validated, partitions_of_run, targets_of_run
from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.object_store import ObjectStore
from render_pipeline.run_policies import RENDER_POOL, STORAGE_RETRY, with_backoff
from render_pipeline.store import renders as renders_store
from render_pipeline.store import uploads as uploads_store
from render_pipeline.store.renders import CompletedRender, RenderTarget

Item = TypeVar("Item")
Result = TypeVar("Result")

# Renders written to the store per request batch: enough to keep the connections busy, few
# enough that their bytes (≈ 2 MB a render) stay a small part of the worker's memory.
UPLOAD_CHUNK = 16
STAGES = ("decode", "preprocess", "quantize", "compose", "preview", "upload")


def _op_name(style_id: str, stage: str) -> str:
    return f"{style_id.replace('-', '_')}_{stage}"


def style_of_step(step_key: str) -> str | None:
    """The style whose render graph a step (``<graph>.<op>`` or ``<op>``) belongs to."""
    op_name = step_key.rsplit(".", 1)[-1]
    return next((style_id for style_id in imaging.STYLES for stage in STAGES
                 if op_name == _op_name(style_id, stage)), None)


def render_request_config(default_presets: Sequence[str]) -> type[Config]:
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


def build_render_ops(
    style: imaging.StyleSpec, default_presets: Sequence[str], check_output: str
) -> tuple[OpDefinition, ...]:
    """The six ops of one style's render graph (names are unique per style).  The upload op
    has the asset's output and its ``presets_complete`` check output (``check_output``)."""
    algorithm_config = style.validate_config(None)
    RenderRequest = render_request_config(default_presets)
    return (
        _decode_op(style, RenderRequest),
        _preprocess_op(style),
        _quantize_op(style, algorithm_config),
        _compose_op(style, algorithm_config),
        _preview_op(style),
        _upload_op(style, RenderRequest, algorithm_config, check_output),
    )


def _tags(style: imaging.StyleSpec, stage: int) -> dict[str, str]:
    # Later stages outrank earlier ones, so the in-process executor finishes one style's batch
    # before decoding the next style's.
    return {"render_pipeline/style": style.id, "dagster/priority": str(stage)}


def _stage_op(style: imaging.StyleSpec, name: str, **kwargs):
    """The decorator of a stage op that hands its items to the next one in memory."""
    return op(name=_op_name(style.id, name), out=Out(io_manager_key=HANDOFF_IO_MANAGER), pool=RENDER_POOL,
              tags=_tags(style, STAGES.index(name)), **kwargs)


def _decode_op(style: imaging.StyleSpec, RenderRequest: type[Config]) -> OpDefinition:
    grey = not style.needs_colour

    @_stage_op(style, "decode", ins={"upload": In(Nothing)}, retry_policy=STORAGE_RETRY)
    def decode(
        context: OpExecutionContext,
        config: RenderRequest,
        database: PostgresResource,
        object_store: ObjectStore,
        scratch: RenderScratch,
    ) -> list[DecodedSource]:
        """Decode each valid upload once per distinct draft scale of the requested presets.

        The bytes are those the run's `uploads` step validated (kept in the scratch
        directory), and a decode another style of this run already made is reused; a run
        without that step (a requeue) fetches the object and checks it is the validated one.
        """
        presets = [imaging.get_preset(p) for p in config.presets]
        with database.connection() as conn:
            valid, targets = targets_of_run(context, conn, style, presets)
            startable = renders_store.start(conn, [t for group in targets.values() for t, _ in group],
                                            run_id=context.run.run_id)
        # Renders completed for the same upload and style versions (a retry, a re-execution)
        # are not started again: their rows and objects stay as they are.
        targets = {pk: [(t, p) for t, p in group if t.render_id in startable] for pk, group in targets.items()}
        valid = [(pk, upload) for pk, upload in valid if targets[pk]]

        sources: list[DecodedSource] = []
        for partition_key, upload in valid:
            started = time.perf_counter()
            try:
                data = scratch.source(upload.id) or fetch_validated(object_store, upload)
                info = imaging.read_info(data)
            except Exception as exc:  # one bad upload must not sink the batch; its rows say why
                _fail(database, [t for t, _ in targets[partition_key]], "decode", _reason(exc))
                continue
            wanted = targets[partition_key]
            for scale, group in imaging.draft_groups(info, [preset for _, preset in wanted]).items():
                jobs = [RenderJob(target, partition_key, preset, info) for target, preset in wanted if preset in group]
                try:
                    image = _decoded(scratch, data, (upload.id, upload.sha256, grey, scale), group[0], grey)
                except Exception as exc:
                    _fail(database, [job.target for job in jobs], "decode", _reason(exc))
                    continue
                elapsed = _ms(started)
                sources.append(DecodedSource(tuple(job.timed("decode", elapsed) for job in jobs), image))
                started = time.perf_counter()
        return sources

    return decode


def _decoded(scratch: RenderScratch, data: bytes, key: tuple, preset: imaging.SizePreset, grey: bool) -> SpilledArray:
    """The decode of ``data`` for ``preset``'s draft scale, made once per run and key."""
    spilled = scratch.decoded(key)
    if spilled is None:
        spilled = scratch.keep_decoded(key, np.asarray(imaging.decode(data, fit=preset, grey=grey).image))
    return spilled


def _preprocess_op(style: imaging.StyleSpec) -> OpDefinition:
    grey = not style.needs_colour

    @_stage_op(style, "preprocess")
    def preprocess(database: PostgresResource, scratch: RenderScratch, sources: list[DecodedSource]) -> list[Fitted]:
        """Fit each decoded upload to each of its presets (crop or pad to the exact size),
        reusing the fit another style of this run already made from the same decode."""

        def work(source: DecodedSource) -> Iterator[Fitted]:
            image = None
            for job in source.jobs:
                started = time.perf_counter()
                key = (job.target.asset_id, job.target.source_sha256, grey, job.preset.id)
                fitted = scratch.fitted(key)
                if fitted is None:
                    if image is None:
                        image = Image.fromarray(source.image.load())
                    pixels = imaging.preprocess(image, job.preset)
                    job = job.timed("preprocess", _ms(started))
                    yield Fitted(job, scratch.keep_fitted(key, pixels))
                else:
                    yield Fitted(job.timed("preprocess", _ms(started)), fitted)

        return _each(database, sources, "preprocess", work, jobs=lambda source: source.jobs)

    return preprocess


def _quantize_op(style: imaging.StyleSpec, algorithm_config: dict) -> OpDefinition:
    @_stage_op(style, "quantize")
    def quantize(database: PostgresResource, scratch: RenderScratch, items: list[Fitted]) -> list[Quantized]:
        """Reduce each fitted image to the style's palette (fixed-seed k-means on a sample)."""

        def work(item: Fitted) -> Iterator[Quantized]:
            started = time.perf_counter()
            result = style.quantize(item.pixels.load(), algorithm_config)
            palette = tuple(tuple(int(v) for v in colour) for colour in result.palette)
            yield Quantized(item.job.timed("quantize", _ms(started)), item.pixels, scratch.spill(result.labels), palette)

        return _each(database, items, "quantize", work)

    return quantize


def _compose_op(style: imaging.StyleSpec, algorithm_config: dict) -> OpDefinition:
    @_stage_op(style, "compose")
    def compose(database: PostgresResource, scratch: RenderScratch, items: list[Quantized]) -> list[Composed]:
        """Draw the style (palette mapping, ink outlines, dots, panels) at the preset size."""

        def work(item: Quantized) -> Iterator[Composed]:
            started = time.perf_counter()
            quantization = imaging.Quantization(labels=item.labels.load(), palette=np.array(item.palette, np.uint8))
            image = style.compose(item.pixels.load(), quantization, item.job.preset, algorithm_config)
            composed = Composed(item.job.timed("compose", _ms(started)), scratch.spill(np.asarray(image)),
                                tuple(imaging.drawn_palette(image)))
            item.pixels.discard()
            item.labels.discard()
            yield composed

        return _each(database, items, "compose", work)

    return compose


def _preview_op(style: imaging.StyleSpec) -> OpDefinition:
    @_stage_op(style, "preview")
    def preview(database: PostgresResource, scratch: RenderScratch, items: list[Composed]) -> list[Encoded]:
        """Encode the output PNG and the 512 px JPEG preview."""

        def work(item: Composed) -> Iterator[Encoded]:
            started = time.perf_counter()
            image = Image.fromarray(item.indices.load(), "L")
            image.putpalette([channel for colour in item.palette for channel in colour], "RGB")
            encoded = imaging.encode_outputs(image)
            job = item.job.timed("preview", _ms(started))
            yield Encoded(
                job, scratch.spill_bytes(encoded.png), scratch.spill_bytes(encoded.preview_jpeg),
                hashlib.sha256(encoded.png).hexdigest(), encoded.pixels_sha256, item.palette,
            )
            item.indices.discard()

        return _each(database, items, "preview", work)

    return preview


def _upload_op(style: imaging.StyleSpec, RenderRequest: type[Config], algorithm_config: dict,
               check_output: str) -> OpDefinition:
    # No step retry: each write is retried in the op (with_backoff, for the store's
    # retry_seconds) so that one failing object fails only its renders, and the database pool
    # waits out a short PostgreSQL outage; a step retry would repeat every write of the batch.
    @op(
        name=_op_name(style.id, "upload"),
        out={"result": Out(is_required=False), check_output: Out(is_required=False)},
        tags=_tags(style, STAGES.index("upload")),
    )
    def upload(
        context: OpExecutionContext,
        config: RenderRequest,
        database: PostgresResource,
        object_store: ObjectStore,
        items: list[Encoded],
    ):
        """Write both objects of each render under its deterministic keys, mark its row
        completed, then report each upload partition to Dagster on its own: a materialization
        with its renders and preview, and its `presets_complete` check.

        Objects first, row second: a crash in between leaves a row that a retry completes and
        objects that the same keys overwrite — never a `completed` row without objects.
        """
        completed: list[events.CompletedItem] = []
        for chunk in _chunks(items, UPLOAD_CHUNK):
            completed += _upload_chunk(database, object_store, chunk, style, algorithm_config)
        context.log.info(f"{len(completed)} {style.id} render(s) completed")
        try:
            asset_ids, uploads, rows = with_backoff(lambda: _check_facts(context, database, style.id))
        except Exception as exc:  # an error of the check, not of the renders written
            partition_keys = ([pk for pk in context.partition_keys if any(c.partition_key == pk for c in completed)]
                              if REQUEUE_RUN_TAG in context.run.tags else list(context.partition_keys))
            yield from events.unchecked_partition_events(
                context, style, config.presets, partition_keys, completed, failures.describe(exc))
        else:
            yield from events.render_partition_events(
                context, style, config.presets, asset_ids, uploads, rows, completed,
            )
        yield Output(None, output_name=check_output)

    return upload


def _check_facts(context: OpExecutionContext, database: PostgresResource, style_id: str):
    """What ``presets_complete`` judges: the run's partitions, their uploads and rows."""
    with database.connection() as conn:
        partition_keys = partitions_of_run(context, conn, style_id)
        asset_ids = {pk: asset_id_for(object_key_for(pk)) for pk in partition_keys}
        rows = renders_store.rows_for(conn, list(asset_ids.values()), style_id)
        uploads = uploads_store.uploads_by_partition(conn, partition_keys)
    return asset_ids, uploads, rows


def _upload_chunk(
    database: PostgresResource, object_store: ObjectStore, chunk: Sequence[Encoded], style: imaging.StyleSpec,
    algorithm_config: dict,
) -> list[events.CompletedItem]:
    started = time.perf_counter()
    objects = []
    for item in chunk:
        output_key, preview_key = render_object_keys(item.job.target.render_id)
        objects += [(output_key, item.output_png.load(), "image/png"),
                    (preview_key, item.preview_jpeg.load(), "image/jpeg")]
    try:
        with_backoff(lambda: object_store.put_many(objects), budget_seconds=object_store.retry_seconds)
    except Exception as exc:
        _fail(database, [item.job.target for item in chunk], "upload", _reason(exc))
        return []
    upload_ms = _ms(started) / len(chunk)
    done = []
    with database.connection() as conn:
        for item, (_, png, _), (_, jpeg, _) in zip(chunk, objects[0::2], objects[1::2]):
            job = item.job.timed("upload", upload_ms)
            record = _completed_record(job, item, style, algorithm_config)
            renders_store.complete(conn, record)
            done.append(events.CompletedItem(job.partition_key, record, jpeg))
    return done


def _completed_record(job: RenderJob, item: Encoded, style: imaging.StyleSpec, algorithm_config: dict) -> CompletedRender:
    output_key, preview_key = render_object_keys(job.target.render_id)
    metadata = imaging.render_metadata(
        style, job.preset, algorithm_config, info=job.source, palette=item.palette,
        pixels_sha256=item.pixels_sha256, timings_ms=job.timings_ms,
    )
    metadata["duration_ms"] = round(sum(job.timings_ms.values()), 2)
    metadata["partition_key"] = job.partition_key
    metadata["source_sha256"] = job.target.source_sha256
    return CompletedRender(
        target=job.target,
        output_key=output_key,
        preview_key=preview_key,
        output_sha256=item.output_sha256,
        output_bytes=item.output_png.size,
        width=job.preset.width,
        height=job.preset.height,
        style_version=style.version,
        algorithm_config=dict(algorithm_config),
        render_metadata=metadata,
    )


def _each(
    database: PostgresResource,
    items: Iterable[Item],
    stage: str,
    work: Callable[[Item], Iterable[Result]],
    *,
    jobs: Callable[[Item], Iterable[RenderJob]] = lambda item: (item.job,),
) -> list[Result]:
    """Apply one stage to every item; an item that fails is recorded `failed` and dropped."""
    done: list[Result] = []
    for item in items:
        try:
            done += list(work(item))
        except Exception as exc:  # one bad render must not sink the batch; its row says why
            _fail(database, [job.target for job in jobs(item)], stage, _reason(exc))
    return done


def _chunks(items: Sequence[Item], size: int) -> Iterator[Sequence[Item]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _reason(exc: Exception) -> str:
    if isinstance(exc, (imaging.ImageRejected, UploadGone)):
        return str(exc)
    return failures.describe(exc)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _fail(database: PostgresResource, targets: Sequence[RenderTarget], stage: str, reason: str) -> None:
    with database.connection() as conn:
        renders_store.fail(conn, [t.render_id for t in targets], f"{stage}: {reason}"[:2000])
