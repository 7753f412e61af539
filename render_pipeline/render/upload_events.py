"""Uploads found through MinIO's bucket notifications, ahead of the listing cycle.

Each tick reads the events written since its position, plus a short overlap behind it (MinIO
delivers events late when its queue or a retry holds them), keeps the `uploads/` objects of
our bucket that still need a run, and checks each with a HEAD: the object as it is now is
what gets claimed, and an event for an object since deleted claims nothing.  Every row is
untrusted: anything that is not an object-created event of an acceptable key is skipped with
its reason.  The claim (`store.uploads.mark_requested`) is what makes a version requested
once, whichever path — events, overlap, listing — saw it first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import unquote_plus

import psycopg

from render_pipeline.keys import UPLOADS_PREFIX, InvalidUploadKey, asset_id_for, partition_key_for, storable_key
from render_pipeline.resources.database import DatabaseUnavailable, PostgresResource
from render_pipeline.resources.object_store import ObjectStore, ObjectStoreError
from render_pipeline.resources.upload_events import UploadEventsResource
from render_pipeline.store import upload_events as events_store
from render_pipeline.store import uploads as uploads_store
from render_pipeline.store.upload_events import EventPosition, EventRow
from render_pipeline.store.uploads import UploadSighting

EVENTS_PER_TICK = 1000
OVERLAP = timedelta(minutes=2)
OVERLAP_ROWS_PER_TICK = 1000
CREATED_EVENT_PREFIX = "s3:ObjectCreated:"


@dataclass(frozen=True)
class EventUpload:
    """An object-created event for an acceptable key: the key (decoded) and the event's ETag."""

    key: str
    etag: str


@dataclass
class EventIntake:
    """What one tick's read of the table found."""

    position: EventPosition | None
    sightings: list[UploadSighting] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one readable reason per skipped record
    unavailable: str | None = None  # why the table could not be read, if it could not


def position_to_json(position: EventPosition | None) -> dict | None:
    return None if position is None else {"time": position.time.isoformat(), "tie": position.tie}


def position_from_json(raw: object) -> EventPosition | None:
    if not isinstance(raw, dict):
        return None
    return EventPosition(time=datetime.fromisoformat(raw["time"]), tie=str(raw["tie"]))


def parse_event(row: EventRow, bucket: str) -> tuple[list[EventUpload], list[str]]:
    """The uploads a row announces, and why each other record in it is skipped."""
    if row.data is None:
        too_large = row.size > events_store.MAX_EVENT_BYTES
        return [], [f"event of {row.size} bytes is over {events_store.MAX_EVENT_BYTES}" if too_large else "empty event"]
    try:
        document = json.loads(row.data)
    except json.JSONDecodeError as exc:
        return [], [f"event is not JSON ({exc.msg})"]
    records = document.get("Records") if isinstance(document, dict) else None
    if not isinstance(records, list) or not records:
        return [], ["event has no Records list"]
    uploads, skipped = [], []
    for record in records:
        upload, reason = _parse_record(record, bucket)
        if upload is not None:
            uploads.append(upload)
        else:
            skipped.append(reason)
    return uploads, skipped


def _parse_record(record: object, bucket: str) -> tuple[EventUpload | None, str]:
    s3 = record.get("s3") if isinstance(record, dict) else None
    obj = s3.get("object") if isinstance(s3, dict) else None
    owner = s3.get("bucket") if isinstance(s3, dict) else None
    if not isinstance(obj, dict) or not isinstance(owner, dict):
        return None, "record has no s3.object and s3.bucket"
    name = record.get("eventName")
    if not isinstance(name, str) or not name.startswith(CREATED_EVENT_PREFIX):
        return None, f"not an object-created event ({_shown(name)})"
    if owner.get("name") != bucket:
        return None, f"event of another bucket ({_shown(owner.get('name'))})"
    raw_key, etag = obj.get("key"), obj.get("eTag", "")
    if not isinstance(raw_key, str) or not isinstance(etag, str):
        return None, "record's object key or eTag is not a string"
    try:
        key = unquote_plus(raw_key, errors="strict")  # S3 event keys are URL-encoded
    except UnicodeDecodeError:
        return None, f"key {_shown(raw_key)} is not UTF-8 once URL-decoded"
    if not key.startswith(UPLOADS_PREFIX):
        return None, f"key {_shown(key)} is not under {UPLOADS_PREFIX}"
    try:
        partition_key_for(key)
    except InvalidUploadKey as exc:
        return None, f"key {_shown(key)} rejected: {exc}"
    return EventUpload(key=key, etag=etag.strip('"')), ""


def _shown(value: object) -> str:
    """An untrusted value as a short, printable quotation for a log line."""
    text = storable_key(value) if isinstance(value, str) else repr(value)
    return repr(text[:120] + ("…" if len(text) > 120 else ""))


def read_event_uploads(
    events: UploadEventsResource, database: PostgresResource, object_store: ObjectStore,
    position: EventPosition | None, cap: int,
) -> EventIntake:
    """The uploads announced since ``position`` (and in the overlap behind it) that need a
    run, at most ``cap``; the new position stops before the first upload left for later.
    Reasons are kept for the new rows only: the overlap's were given when they were new."""
    intake = EventIntake(position=position)
    try:
        with events.connection(database) as conn:
            fresh = events_store.events_after(conn, events.table, position, EVENTS_PER_TICK, start_within=OVERLAP)
            late = (events_store.events_in_overlap(conn, events.table, position, OVERLAP, OVERLAP_ROWS_PER_TICK)
                    if position is not None else [])
    except (psycopg.Error, DatabaseUnavailable) as exc:
        intake.unavailable = _one_line(exc)
        return intake
    late_uploads = {up.key: up for row in late for up in parse_event(row, events.bucket)[0]}
    fresh_uploads = []
    for row in fresh:
        uploads, reasons = parse_event(row, events.bucket)
        fresh_uploads.append((row, uploads))
        intake.skipped.extend(reasons)
    every = {**late_uploads, **{up.key: up for _, uploads in fresh_uploads for up in uploads}}
    with database.connection() as conn:
        settled = _settled(conn, every)
    announced = dict(list((key, up) for key, up in late_uploads.items() if key not in settled)[:cap])
    new_keys: set[str] = set()
    for row, uploads in fresh_uploads:
        unsettled = {up.key: up for up in uploads if up.key not in settled}
        if len(announced.keys() | unsettled.keys()) > cap:
            break
        announced.update(unsettled)
        new_keys.update(unsettled)
        intake.position = row.position
    try:
        intake.sightings = _present(object_store, announced, new_keys, intake.skipped)
    except ObjectStoreError as exc:  # read these rows again next tick
        intake.position, intake.unavailable = position, f"HEAD of an announced upload failed: {exc}"
    return intake


def _settled(conn: psycopg.Connection, uploads: dict[str, EventUpload]) -> set[str]:
    if not uploads:
        return set()
    needing = uploads_store.versions_needing_runs(conn, [(key, up.etag) for key, up in uploads.items()])
    return {key for key, up in uploads.items() if (key, up.etag) not in needing}


def _present(object_store: ObjectStore, announced: dict[str, EventUpload], new_keys: set[str],
             skipped: list[str]) -> list[UploadSighting]:
    """Sightings of the announced objects that still exist, as they are now (a deleted one is
    reported once, when its event is new, not again on each re-read of the overlap)."""
    heads = object_store.head_many(list(announced))
    sightings = []
    for key, info in heads.items():
        if info is None:
            if key in new_keys:
                skipped.append(f"key {_shown(key)} no longer exists")
            continue
        sightings.append(UploadSighting(asset_id_for(key), key, partition_key_for(key), info.etag, info.size))
    return sightings


def _one_line(exc: BaseException) -> str:
    """The error's first line: PostgreSQL's next lines quote the statement."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__
