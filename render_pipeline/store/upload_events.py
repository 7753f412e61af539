"""Reads MinIO's bucket-notification table (`notify_postgres`, format=access).

MinIO appends one row per event, ``(event_time TIMESTAMPTZ, event_data JSONB)``, and gives the
rows no id, so a position in the table is the event time plus a tie-breaker computed from the
row itself (the md5 of its JSON).  The table is the operator's, named in the settings: its
name goes through psycopg.sql as an identifier, never into the SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

# MinIO writes a few hundred bytes per event; anything far larger is not one of its events.
MAX_EVENT_BYTES = 64 * 1024


@dataclass(frozen=True, order=True)
class EventPosition:
    """Where a reader stands in the table: after this (event_time, tie) pair."""

    time: datetime
    tie: str


@dataclass(frozen=True)
class EventRow:
    position: EventPosition
    data: str | None  # the event JSON as text; None when it is NULL or over MAX_EVENT_BYTES
    size: int  # its length in bytes (0 for NULL)


def table_identifier(name: str) -> sql.Identifier:
    """``name`` or ``schema.name`` as a (schema-qualified) identifier."""
    return sql.Identifier(*name.split("."))


_COLUMNS = sql.SQL(
    "event_time, md5(coalesce(event_data::text, '')) AS tie, "
    "coalesce(octet_length(event_data::text), 0) AS size, "
    "CASE WHEN octet_length(event_data::text) <= {max_bytes} THEN event_data::text END AS data"
)


def events_after(conn: psycopg.Connection, table: str, after: EventPosition | None, limit: int,
                 *, start_within: timedelta) -> list[EventRow]:
    """The next ``limit`` rows after ``after``, in table order; with no position yet, those of
    the last ``start_within`` (older uploads are the listing cycle's: a table kept for days
    must not be read from its start, a page a tick, before today's events are)."""
    columns = _COLUMNS.format(max_bytes=sql.Literal(MAX_EVENT_BYTES))
    if after is None:
        query = sql.SQL("SELECT {columns} FROM {table} WHERE event_time > now() - %(within)s "
                        "ORDER BY event_time, tie LIMIT %(limit)s")
    else:
        query = sql.SQL(
            "SELECT {columns} FROM {table} WHERE event_time >= %(time)s "
            "AND (event_time, md5(coalesce(event_data::text, ''))) > (%(time)s, %(tie)s) "
            "ORDER BY event_time, tie LIMIT %(limit)s"
        )
    params = {"limit": limit, **({"time": after.time, "tie": after.tie} if after else {"within": start_within})}
    return _rows(conn, query.format(columns=columns, table=table_identifier(table)), params)


def events_in_overlap(
    conn: psycopg.Connection, table: str, upto: EventPosition, overlap: timedelta, limit: int
) -> list[EventRow]:
    """Rows at or before ``upto`` but at most ``overlap`` older: where events that MinIO
    delivered late (its queue, a retry) land after the reader has passed their time."""
    query = sql.SQL(
        "SELECT {columns} FROM {table} WHERE event_time > %(since)s AND event_time <= %(time)s "
        "AND (event_time, md5(coalesce(event_data::text, ''))) <= (%(time)s, %(tie)s) "
        "ORDER BY event_time DESC, tie DESC LIMIT %(limit)s"
    ).format(columns=_COLUMNS.format(max_bytes=sql.Literal(MAX_EVENT_BYTES)), table=table_identifier(table))
    params = {"since": upto.time - overlap, "time": upto.time, "tie": upto.tie, "limit": limit}
    return _rows(conn, query, params)


def _rows(conn: psycopg.Connection, query: sql.Composed, params: dict) -> list[EventRow]:
    with conn.cursor(row_factory=tuple_row) as cursor:
        cursor.execute(query, params)
        return [
            EventRow(position=EventPosition(time=time, tie=tie), data=data, size=size)
            for time, tie, size, data in cursor.fetchall()
        ]
