"""Sensors: new uploads → runs, failed runs → failed rows (requeues: ``requeues``).

The upload sensor finds uploads two ways.  With RENDER_EVENTS_TABLE set it first reads MinIO's
bucket notifications (`upload_events`), so a new or overwritten object is requested on the
next tick whatever the bucket's size.  Behind them, and alone without them, it treats the
bucket listing as a cycle, not a high-water mark: each tick resumes where the previous one
stopped, reads a bounded number of pages, asks the database in one query per page which
(key, ETag) versions it has not settled, and wraps to the start when the listing ends.  Every
object is therefore seen once per cycle whatever its key — user-chosen ids are not monotonic —
and both paths go through one claim, so run keys plus the `requested_at` mark make a second
sighting harmless.
"""


import functools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from render_pipeline.keys import (
    UPLOADS_PREFIX,
    InvalidUploadKey,
    asset_id_for,
    partition_key_for,
    short_hash,
    storable_key,
)
from render_pipeline.maintenance.dead_runs import FAILED_FROM_OUTSIDE, worker_crash_reason
from render_pipeline.render import failures
from render_pipeline.render import upload_events as event_intake
from render_pipeline.render.events import render_asset_key
from render_pipeline.render.job import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    RENDER_RUN_TAGS,
    REQUEUE_RUN_TAG,
    partition_keys_of,
    render_uploads_job,
)
from render_pipeline.render.ops import style_of_step
from render_pipeline.render.partitions import uploads_partitions
from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.object_store import LIST_PAGE_SIZE, ObjectStore
from render_pipeline.resources.upload_events import UploadEventsResource
from render_pipeline.store import renders as renders_store
from render_pipeline.store import uploads as uploads_store
from render_pipeline.store.upload_events import EventPosition
from render_pipeline.store.uploads import UploadSighting

MAX_PAGES_PER_TICK = 5
MAX_UPLOADS_PER_TICK = 400  # each new partition and run request costs the daemon time
# A run costs seconds to launch (≈ 2 s of a core to start its worker), so new uploads share
# runs of up to this many: a 1 000-upload burst of 2 MP images took 216 s in runs of ≤ 128
# against 252 s in runs of ≤ 64 (benchmarks/dagster_bench.py part b).  A run's memory does
# not grow with its batch ...
MAX_UPLOADS_PER_SENSOR_RUN = 128
# ... but its scratch directory does (20-30x the source bytes: the decodes and fitted
# images every style of the run shares), so large images share smaller runs.
MAX_SOURCE_BYTES_PER_SENSOR_RUN = 256 * 1024 * 1024
# A burst is split over a multiple of this many runs, one per run slot (dagster.yaml's
# max_concurrent_runs), so every core renders until the burst is done: a run renders on one core.
MIN_RUNS_PER_BURST = 2
MAX_SKIP_LINES = 10  # skipped event records logged one per line; the rest are counted
PENDING_RUN_STATUSES = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
                        DagsterRunStatus.STARTED]
Item = TypeVar("Item")


@dataclass
class ListingCursor:
    """Where the listing resumes (`after` a key; None = from the start), how many full
    passes over the bucket have completed, and where the event reader stands."""

    after: str | None = None
    cycle: int = 0
    events: EventPosition | None = None

    @classmethod
    def parse(cls, raw: str | None) -> "ListingCursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(after=data.get("after"), cycle=int(data.get("cycle", 0)),
                   events=event_intake.position_from_json(data.get("events")))

    def serialize(self) -> str:
        return json.dumps({"after": self.after, "cycle": self.cycle,
                           "events": event_intake.position_to_json(self.events)})


def build_uploads_sensor(render_styles: Sequence[str]):
    render_keys = [render_asset_key(style) for style in render_styles]

    @sensor(
        name="uploads_sensor",
        job=render_uploads_job,
        minimum_interval_seconds=5,  # latency: a new upload waits at most this long for its tick
        default_status=DefaultSensorStatus.RUNNING,
        description="Registers new or changed objects under uploads/ as partitions and renders them.",
    )
    def uploads_sensor(
        context: SensorEvaluationContext, database: PostgresResource, object_store: ObjectStore,
        upload_events: UploadEventsResource,
    ) -> SensorResult | SkipReason:
        cursor = ListingCursor.parse(context.cursor)
        announced = _read_events(context, upload_events, database, object_store, cursor)
        listed, invalid_keys, pages = _scan(database, object_store, cursor,
                                            MAX_UPLOADS_PER_TICK - len(announced))
        for key, reason in invalid_keys:
            context.log.warning(f"upload key {storable_key(key)!r} rejected: {reason}")
        sightings = list({s.asset_id: s for s in [*listed, *announced]}.values())  # an event's HEAD is newer
        # One partition lookup for the tick, not one per upload (each is a round trip to Dagster's storage).
        known = context.instance.get_existing_dynamic_partitions(
            uploads_partitions.name, [s.partition_key for s in sightings]) if sightings else set()
        sightings = _without_pending_runs(context.instance, sightings, known)

        if not sightings:
            return SensorResult(
                cursor=cursor.serialize(),
                skip_reason=f"read {pages} page(s); no new uploads ({len(invalid_keys)} invalid key(s) recorded)",
            )

        # Claim before deciding anything: an evaluation racing this one on the same listing
        # (a re-evaluated or duplicated tick) gets the other versions, never the same ones.
        with database.connection() as conn:
            claimed = uploads_store.mark_requested(conn, sightings)
        sightings = [replace(s, claimed_at=claimed[s.asset_id]) for s in sightings if s.asset_id in claimed]
        if not sightings:
            return SensorResult(cursor=cursor.serialize(), skip_reason="every upload seen was claimed by another tick")

        new_keys = dict.fromkeys(s.partition_key for s in sightings if s.partition_key not in known)  # ordered set

        # Partitions added in one request are appended in order, so new keys form one
        # contiguous range and can share ranged runs; known partitions run on their own.
        batches = split_into_runs([s for s in sightings if s.partition_key in new_keys], lambda s: s.size)
        batches += [[s] for s in sightings if s.partition_key not in new_keys]
        run_requests = [_run_request(batch, cursor.cycle, render_keys) for batch in batches]

        context.log.info(
            f"{len(sightings)} upload(s) to render ({len(new_keys)} new, {len(announced)} announced by events) "
            f"in {len(run_requests)} run(s); {len(invalid_keys)} invalid key(s); cursor {cursor.serialize()}"
        )
        return SensorResult(
            run_requests=run_requests,
            dynamic_partitions_requests=[AddDynamicPartitionsRequest(uploads_partitions.name, list(new_keys))]
            if new_keys else [],
            cursor=cursor.serialize(),
        )

    return uploads_sensor


def _without_pending_runs(instance, sightings: list[UploadSighting], known: set[str]) -> list[UploadSighting]:
    """Drop the sightings of ``known`` partitions that a render run still queued or in progress
    covers.  Such a version was requested and its run is waiting for a slot, not lost: with a
    backlog longer than the re-request window, every waiting upload would otherwise be
    requested again, one run each.  A later cycle looks again once that run has ended."""
    if not any(s.partition_key in known for s in sightings):  # a new partition is in no run yet
        return sightings
    runs = instance.get_runs(RunsFilter(job_name=render_uploads_job.name, statuses=PENDING_RUN_STATUSES))
    if not runs:
        return sightings
    ordered = functools.cache(lambda: instance.get_dynamic_partitions(uploads_partitions.name))
    pending = {key for run in runs for key in partition_keys_of(run.tags, ordered)}
    return [s for s in sightings if s.partition_key not in pending]


def _read_events(
    context: SensorEvaluationContext, events: UploadEventsResource, database: PostgresResource,
    object_store: ObjectStore, cursor: ListingCursor,
) -> list[UploadSighting]:
    """The uploads MinIO's notifications announce (none when events are off or unreadable:
    the listing cycle then finds everything, later)."""
    if not events.enabled:
        return []
    intake = event_intake.read_event_uploads(events, database, object_store, cursor.events, MAX_UPLOADS_PER_TICK)
    if intake.unavailable is not None:
        context.log.warning(f"upload events table {events.table!r} not used this tick ({intake.unavailable}); "
                            "the listing cycle carries on")
        return []
    for reason in intake.skipped[:MAX_SKIP_LINES]:
        context.log.warning(f"upload event skipped: {reason}")
    if len(intake.skipped) > MAX_SKIP_LINES:
        context.log.warning(f"{len(intake.skipped) - MAX_SKIP_LINES} more upload event record(s) skipped")
    cursor.events = intake.position
    return intake.sightings


def _scan(
    database: PostgresResource, object_store: ObjectStore, cursor: ListingCursor, budget: int
) -> tuple[list[UploadSighting], list[tuple[str, str]], int]:
    """Advance ``cursor`` through at most MAX_PAGES_PER_TICK pages (read one by one as the
    store allows); collect at most ``budget`` unsettled versions."""
    sightings: list[UploadSighting] = []
    invalid_keys: list[tuple[str, str]] = []
    pages = 0
    if budget <= 0:
        return sightings, invalid_keys, pages
    for page in object_store.list_pages(UPLOADS_PREFIX, cursor=cursor.after, page_size=LIST_PAGE_SIZE,
                                        pages=MAX_PAGES_PER_TICK):
        pages += 1
        with database.connection() as conn:
            unsettled = uploads_store.versions_needing_runs(
                conn, [(storable_key(o.key), o.etag) for o in page.objects]
            )
            for obj in page.objects:
                if (storable_key(obj.key), obj.etag) in unsettled:
                    try:
                        partition_key = partition_key_for(obj.key)
                    except InvalidUploadKey as exc:
                        uploads_store.record_invalid_key(
                            conn, asset_id=asset_id_for(obj.key), object_key=storable_key(obj.key),
                            etag=obj.etag, reason=str(exc),
                        )
                        invalid_keys.append((obj.key, str(exc)))
                    else:
                        sightings.append(
                            UploadSighting(asset_id_for(obj.key), obj.key, partition_key, obj.etag, obj.size)
                        )
                cursor.after = obj.key
                if len(sightings) >= budget:
                    return sightings, invalid_keys, pages
        if page.next_cursor is None:
            cursor.after, cursor.cycle = None, cursor.cycle + 1
            break
        cursor.after = page.next_cursor
    return sightings, invalid_keys, pages


def split_into_runs(sightings: Sequence[Item], size_of: Callable[[Item], int] = lambda _: 0) -> list[list[Item]]:
    """Consecutive groups of near-equal length: as few runs as MAX_UPLOADS_PER_SENSOR_RUN and
    (on average) MAX_SOURCE_BYTES_PER_SENSOR_RUN allow, rounded up to whole rounds of
    MIN_RUNS_PER_BURST runs when there are that many uploads."""
    if not sightings:
        return []
    needed = max(math.ceil(len(sightings) / MAX_UPLOADS_PER_SENSOR_RUN),
                 math.ceil(sum(size_of(s) for s in sightings) / MAX_SOURCE_BYTES_PER_SENSOR_RUN))
    runs = min(len(sightings), MIN_RUNS_PER_BURST * math.ceil(needed / MIN_RUNS_PER_BURST))
    size, extra = divmod(len(sightings), runs)
    batches, start = [], 0
    for index in range(runs):
        end = start + size + (1 if index < extra else 0)
        batches.append(list(sightings[start:end]))
        start = end
    return batches


def _run_request(batch: Sequence[UploadSighting], cycle: int, render_keys: Sequence[AssetKey]) -> RunRequest:
    """One run validating and rendering a contiguous range of upload partitions."""
    versions = "\n".join(f"{s.object_key}\t{s.etag}\t{s.claimed_at}" for s in batch)
    return RunRequest(
        run_key=f"uploads:{cycle}:{short_hash(versions)}",
        asset_selection=[AssetKey("uploads"), *render_keys],
        tags={
            **RENDER_RUN_TAGS,
            # A ranged run: Dagster reads the range from these tags (RunRequest has no range).
            PARTITION_RANGE_START_TAG: batch[0].partition_key,
            PARTITION_RANGE_END_TAG: batch[-1].partition_key,
            "render_pipeline/uploads": str(len(batch)),
        },
    )


def _error_line(error) -> str:
    """One readable line for a step's error.  Dagster's own wrapper ("Exceeded max_retries of
    4", "Error occurred while executing op …") does not say what failed; the exception our code
    raised is its cause, so both are shown: "Exceeded max_retries of 4: ObjectStoreError: S3 put …"."""

    def first_line(info) -> str:
        lines = [line.strip() for line in (info.message or "").splitlines() if line.strip()]
        return lines[0] if lines else info.cls_name

    line = first_line(error)
    if error.cause is not None:
        cause = first_line(error.cause)
        # "render_pipeline.resources.object_store.ObjectStoreError: …" → "ObjectStoreError: …"
        head, sep, rest = cause.partition(": ")
        if sep and "." in head and " " not in head:
            cause = f"{head.rsplit('.', 1)[-1]}: {rest}"
        line = f"{line.rstrip('.:')}: {cause}"
    return failures.one_line(line)


def _fail_rows_of_run(context: RunStatusSensorContext, database: PostgresResource, what: str) -> None:
    """Each unfinished render of the run gets its own reason: the step of its style that
    failed and that step's error, or, if its style's steps did not fail, that the run ended
    before (``not started``) or while (``unfinished``) it ran, and where the run failed."""
    run = context.dagster_run
    step_reasons: dict[str, str] = {}
    first_failure: str | None = None
    if isinstance(context, RunFailureSensorContext):
        for event in context.get_step_failure_events():
            error = event.event_specific_data.error if event.event_specific_data else None
            if error is None:
                continue
            reason = f"{what} in step {event.step_key}: {_error_line(error)}"
            first_failure = first_failure or reason
            style = style_of_step(event.step_key)
            if style is not None:
                step_reasons.setdefault(style, reason)
        message = context.failure_event.message
        if first_failure is None and message:
            if message == FAILED_FROM_OUTSIDE:
                message = worker_crash_reason(context.instance, run.run_id) or message
            first_failure = f"{what}: {failures.one_line(message)}"
    run_reason = first_failure or what
    partitions = partition_keys_of(
        run.tags, lambda: context.instance.get_dynamic_partitions(uploads_partitions.name)
    )
    retry_note = f"; requested again within {uploads_store.REREQUEST_AFTER_SECONDS // 60} minutes"
    with database.connection() as conn:
        count = renders_store.fail_unfinished_for_run(
            conn, run.run_id, step_reasons={style: _limited(reason, run.run_id) for style, reason in step_reasons.items()},
            started=_limited(f"unfinished: {run_reason}", run.run_id),
            not_started=_limited(f"not started: {run_reason}", run.run_id),
            requeue_run=run.tags.get(REQUEUE_RUN_TAG),
        )
        unvalidated = uploads_store.note_run_failed(
            conn, partitions, f"{run_reason} (run {run.run_id}){retry_note}"[:2000]
        )
    context.log.info(f"marked {count} render(s) of run {run.run_id} failed; "
                     f"{unvalidated} upload(s) left unvalidated now say why")


def _limited(reason: str, run_id: str) -> str:
    return f"{reason} (run {run_id})"[:2000]


@run_failure_sensor(
    name="render_run_failure_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    description="Marks the renders of a failed run `failed` with the error, so the table stays true.",
)
def render_run_failure_sensor(context: RunFailureSensorContext, database: PostgresResource) -> None:
    _fail_rows_of_run(context, database, "run failed")


@run_status_sensor(
    name="render_run_canceled_sensor",
    run_status=DagsterRunStatus.CANCELED,
    default_status=DefaultSensorStatus.RUNNING,
    description="Marks the renders of a canceled run `failed` (canceled).",
)
def render_run_canceled_sensor(context: RunStatusSensorContext, database: PostgresResource) -> None:
    _fail_rows_of_run(context, database, "run canceled")
