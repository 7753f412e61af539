"""The uploads sensor reads MinIO's bucket notifications (format=access) ahead of its listing
cycle: rows written here exactly as MinIO writes them, for objects in the S3 server (moto
publishes no events, so the test is MinIO's side)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus

import psycopg
import pytest
from psycopg import sql

from render_pipeline.keys import asset_id_for
from render_pipeline.render import sensors
from render_pipeline.store import upload_events as events_store
from render_pipeline_tests.orchestration_helpers import definitions_for, tick

TABLE = "minio_events"
PRESETS = ("play-feature",)


def minio_event(bucket: str, key: str, etag: str, size: int, when: datetime,
                name: str = "s3:ObjectCreated:Put") -> dict:
    """One event as MinIO's PostgreSQL target stores it: ``{"Records": [event]}``, the key
    URL-encoded as MinIO encodes it (Go's url.QueryEscape)."""
    return {"Records": [{
        "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", "eventName": name,
        "userIdentity": {"principalId": "render-uploader"},
        "requestParameters": {"principalId": "render-uploader", "region": "", "sourceIPAddress": "10.0.0.7"},
        "responseElements": {"x-amz-request-id": "17C0A1B2C3D4E5F6", "x-minio-origin-endpoint": "http://minio:9000"},
        "s3": {
            "s3SchemaVersion": "1.0", "configurationId": "Config",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "render-uploader"},
                       "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key, safe=""), "size": size, "eTag": etag,
                       "contentType": "image/jpeg", "userMetadata": {"content-type": "image/jpeg"},
                       "sequencer": f"{int(when.timestamp() * 1e9):X}"},
        },
        "source": {"host": "10.0.0.7", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7.0.70"},
    }]}


class Events:
    """The notification table, created as MinIO creates it (access format)."""

    def __init__(self, url: str, bucket: str, boto, table: str = TABLE) -> None:
        self.url, self.bucket, self.boto, self.table = url, bucket, boto, table
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE TABLE {} (event_time TIMESTAMP WITH TIME ZONE NOT NULL, event_data JSONB)")
                         .format(events_store.table_identifier(table)))

    def insert(self, event_time: datetime, data: object, *, raw: bool = False) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("INSERT INTO {} (event_time, event_data) VALUES (%s, %s::jsonb)")
                         .format(events_store.table_identifier(self.table)),
                         (event_time, data if raw or data is None else json.dumps(data)))

    def put(self, key: str, body: bytes = b"not an image", *, when: datetime | None = None,
            announce: bool = True) -> str:
        """Upload through S3 and, as MinIO would, write its event; returns the ETag."""
        etag = self.boto.put_object(Bucket=self.bucket, Key=key, Body=body)["ETag"].strip('"')
        if announce:
            when = when or datetime.now(UTC)
            self.insert(when, minio_event(self.bucket, key, etag, len(body), when))
        return etag


@pytest.fixture
def events(database_url, s3_bucket, boto) -> Events:
    return Events(database_url, s3_bucket, boto)


@pytest.fixture
def small_listing(monkeypatch):
    """A listing of a few pages stands for a big bucket: a tick reads one page of two keys."""
    monkeypatch.setattr(sensors, "LIST_PAGE_SIZE", 2)
    monkeypatch.setattr(sensors, "MAX_PAGES_PER_TICK", 1)


def _requested(result) -> set[str]:
    keys = set()
    for request in result.run_requests or []:
        start = request.tags["dagster/asset_partition_range_start"]
        end = request.tags["dagster/asset_partition_range_end"]
        keys.update({start, end})
    return keys


def _ticks(defs, instance, cursor, count):
    requested: list[str] = []
    for _ in range(count):
        result = tick(defs, instance, "uploads_sensor", cursor)
        cursor = result.cursor
        requested += sorted(_requested(result))
    return requested, cursor


@pytest.fixture
def far_listing(events, database, small_listing):
    """Twenty settled uploads ahead of the test's keys: the cycle needs ten ticks to reach them."""
    rows = []
    for i in range(20):
        key = f"uploads/a{i:02d}/p.jpg"
        rows.append((asset_id_for(key), key[len("uploads/"):], key, events.put(key, announce=False)))
    with database.connection() as conn, conn.cursor() as cursor:
        cursor.executemany("INSERT INTO assets (id, partition_key, object_key, etag, status) "
                           "VALUES (%s, %s, %s, %s, 'valid')", rows)


def test_an_announced_upload_is_requested_on_the_next_tick_far_from_the_listing(
    s3_env, events, database, instance, far_listing
):
    defs = definitions_for({**s3_env, "RENDER_EVENTS_TABLE": TABLE}, presets=PRESETS)
    events.put("uploads/zz-new/p.jpg")
    result = tick(defs, instance, "uploads_sensor", None)
    assert _requested(result) == {"zz-new/p.jpg"}
    assert instance.has_dynamic_partition("uploads", "zz-new/p.jpg")

    # Without events the same upload waits for the cycle to reach it.
    plain = definitions_for(s3_env, presets=PRESETS)
    events.put("uploads/zz-later/p.jpg")
    assert "zz-later/p.jpg" not in _requested(tick(plain, instance, "uploads_sensor", result.cursor))


def test_duplicated_late_and_overwritten_events_request_each_version_once(
    s3_env, events, database, instance, far_listing
):
    defs = definitions_for({**s3_env, "RENDER_EVENTS_TABLE": TABLE}, presets=PRESETS)
    now = datetime.now(UTC)
    etag = events.put("uploads/dup/p.jpg", when=now)
    events.insert(now, minio_event(events.bucket, "uploads/dup/p.jpg", etag, 12, now))  # delivered twice
    events.put("uploads/second/p.jpg", when=now + timedelta(seconds=1))
    first, cursor = _ticks(defs, instance, None, 1)
    assert sorted(first) == ["dup/p.jpg", "second/p.jpg"]

    # Delivered late: its time is behind the reader's position, inside the overlap.
    events.put("uploads/late/p.jpg", when=now - timedelta(seconds=30))
    events.put("uploads/dup/p.jpg", b"overwritten", when=now + timedelta(seconds=2))  # a new version
    result = tick(defs, instance, "uploads_sensor", cursor)
    assert _requested(result) == {"dup/p.jpg", "late/p.jpg"}
    # One lookup found dup's partition known: only late's is added, and dup runs on its own.
    assert [list(r.partition_keys) for r in result.dynamic_partitions_requests] == [["late/p.jpg"]]
    assert len(result.run_requests) == 2
    later, cursor = _ticks(defs, instance, result.cursor, 2)
    assert later == []
    with database.connection() as conn:
        row = conn.execute("SELECT etag FROM assets WHERE object_key = 'uploads/dup/p.jpg'").fetchone()
    assert row["etag"] != etag


def test_hostile_event_rows_are_skipped_with_their_reasons(s3_env, events, database, instance, capfd):
    defs = definitions_for({**s3_env, "RENDER_EVENTS_TABLE": TABLE}, presets=PRESETS)
    now = datetime.now(UTC)
    bucket = events.bucket
    hostile = [
        None,
        "just a string",
        {"Records": "not a list"},
        {"Records": [{"s3": {}}]},
        minio_event("someone-elses-bucket", "uploads/other/p.jpg", "e1", 1, now),
        minio_event(bucket, "renders/r1/output.png", "e2", 1, now),
        minio_event(bucket, "uploads/x/../evil.jpg", "e3", 1, now),
        minio_event(bucket, "uploads/gone/p.jpg", "e4", 1, now, name="s3:ObjectRemoved:Delete"),
        {"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {"name": bucket},
                                                                   "object": {"key": "uploads/%FF%FE/p.jpg"}}}]},
        {"Records": [], "padding": "x" * (events_store.MAX_EVENT_BYTES + 1)},
    ]
    for data in hostile:
        events.insert(now, data)
    spaced = "uploads/my photos/été 1.jpg"  # arrives as uploads%2Fmy+photos%2F%C3%A9t%C3%A9+1.jpg
    events.put(spaced, when=now + timedelta(seconds=1))

    result = tick(defs, instance, "uploads_sensor", None)
    assert _requested(result) == {"my photos/été 1.jpg"}
    logged = capfd.readouterr().err
    for reason in ("empty event", "no Records list", "no s3.object", "another bucket", "not under uploads/",
                   "'..' path segment", "not an object-created event", "not UTF-8 once URL-decoded",
                   f"over {events_store.MAX_EVENT_BYTES}"):
        assert reason in logged, reason


def test_bad_json_in_an_event_row_is_a_reason_not_a_crash():
    row = events_store.EventRow(events_store.EventPosition(datetime.now(UTC), "t"), '{"Records": [', 13)
    from render_pipeline.render.upload_events import parse_event

    assert parse_event(row, "render-assets") == ([], ["event is not JSON (Expecting value)"])


def test_an_event_for_a_deleted_object_is_checked_and_skipped(s3_env, events, database, instance, capfd):
    defs = definitions_for({**s3_env, "RENDER_EVENTS_TABLE": TABLE}, presets=PRESETS)
    events.put("uploads/deleted/p.jpg")
    events.boto.delete_object(Bucket=events.bucket, Key="uploads/deleted/p.jpg")
    events.put("uploads/kept/p.jpg")
    result = tick(defs, instance, "uploads_sensor", None)
    assert _requested(result) == {"kept/p.jpg"}
    assert "'uploads/deleted/p.jpg' no longer exists" in capfd.readouterr().err
    with database.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM assets").fetchone()["n"] == 1


def test_uploads_without_events_are_found_by_the_cycle(s3_env, events, database, instance, small_listing):
    defs = definitions_for({**s3_env, "RENDER_EVENTS_TABLE": TABLE}, presets=PRESETS)
    events.put("uploads/b-announced/p.jpg")
    for i in range(5):  # MinIO's notifications stopped; uploads did not
        events.put(f"uploads/c{i}/p.jpg", announce=False)
    requested, _ = _ticks(defs, instance, None, 4)
    assert sorted(requested) == ["b-announced/p.jpg", *(f"c{i}/p.jpg" for i in range(5))]


@pytest.mark.parametrize("problem", ["missing table", "unreachable database"])
def test_an_unreadable_table_is_one_warning_and_the_cycle_carries_on(
    s3_env, events, database, instance, capfd, monkeypatch, problem
):
    env = {**s3_env, "RENDER_EVENTS_TABLE": "events.not_there" if problem == "missing table" else TABLE}
    if problem == "unreachable database":
        env["RENDER_EVENTS_DATABASE_URL"] = "postgresql://minio:hunter2@127.0.0.1:9/events?connect_timeout=2"
        monkeypatch.setenv("RENDER_EVENTS_DATABASE_URL", env["RENDER_EVENTS_DATABASE_URL"])
    defs = definitions_for(env, presets=PRESETS)
    events.put("uploads/listed/p.jpg")
    result = tick(defs, instance, "uploads_sensor", None)
    assert _requested(result) == {"listed/p.jpg"}
    logged = capfd.readouterr().err
    warnings = [line for line in logged.splitlines() if "upload events table" in line]
    assert len(warnings) == 1 and "the listing cycle carries on" in warnings[0], logged
    assert "hunter2" not in logged


def test_a_first_read_starts_at_the_recent_events_not_the_tables_start(s3_env, events, database, instance, far_listing):
    """A table kept for days is not read from its start: older uploads are the cycle's."""
    defs = definitions_for({**s3_env, "RENDER_EVENTS_TABLE": TABLE}, presets=PRESETS)
    events.put("uploads/zz-yesterday/p.jpg", when=datetime.now(UTC) - timedelta(days=1))
    events.put("uploads/zz-today/p.jpg")
    assert _requested(tick(defs, instance, "uploads_sensor", None)) == {"zz-today/p.jpg"}
