"""The pipeline's state in the app tables, as `doctor` judges it: one statement, indexed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import psycopg


@dataclass(frozen=True)
class PipelineCounts:
    stale_started: int  # renders `started` longer than the started limit
    stale_queued: int  # renders `queued` longer than the queued limit
    queued: int  # renders waiting
    stuck_uploads: int  # uploads still `registered` past the re-request window
    failed_last_hour: int
    completed_last_hour: int


def pipeline_counts(conn: psycopg.Connection, *, started_limit: timedelta, queued_limit: timedelta,
                    registered_limit: timedelta) -> PipelineCounts:
    row = conn.execute(
        """
        SELECT
          (SELECT count(*) FROM renders WHERE status = 'started' AND started_at < now() - %(started)s)
            AS stale_started,
          (SELECT count(*) FROM renders WHERE status = 'queued' AND updated_at < now() - %(queued)s)
            AS stale_queued,
          (SELECT count(*) FROM renders WHERE status = 'queued') AS queued,
          (SELECT count(*) FROM assets WHERE status = 'registered'
                                         AND coalesce(requested_at, created_at) < now() - %(registered)s)
            AS stuck_uploads,
          (SELECT count(*) FROM renders WHERE status = 'failed' AND created_at >= now() - interval '1 hour')
            AS failed_last_hour,
          (SELECT count(*) FROM renders WHERE status = 'completed' AND completed_at >= now() - interval '1 hour')
            AS completed_last_hour
        """,
        {"started": started_limit, "queued": queued_limit, "registered": registered_limit},
    ).fetchone()
    return PipelineCounts(**{name: int(value) for name, value in row.items()})
