"""What the maintenance procedures share: run kinds and statuses, keyset batches, config range
checks."""

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from dagster import DagsterRunStatus

from render_pipeline.run_policies import MAINTENANCE_KIND, RENDER_KIND

__all__ = [
    "ALIVE_RUN_STATUSES",
    "FINISHED_RUN_STATUSES",
    "MAINTENANCE_KIND",
    "RENDER_KIND",
    "in_range",
    "keyset_batches",
    "render_keys",
]

ALIVE_RUN_STATUSES = (
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
)
FINISHED_RUN_STATUSES = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)

Position = TypeVar("Position")


def keyset_batches(
    fetch: Callable[[Position], Sequence[dict]], start: Position, position: Callable[[dict], Position], *, limit: int
) -> Iterator[Sequence[dict]]:
    """Each non-empty batch of ``fetch(after)`` (at most ``limit`` rows in keyset order), the
    next resuming after the last row of the one before; a short batch is the last.  The
    position moves on whatever was done to the rows, so a batch left as it was is not read
    again and every pass ends."""
    after = start
    while True:
        rows = fetch(after)
        if rows:
            yield rows
        if len(rows) < limit:
            return
        after = position(rows[-1])


def in_range(name: str, value: int, low: int, high: int, unit: str = "") -> int:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}{unit} (got {value})")
    return value


def render_keys(row: dict) -> list[str]:
    return [key for key in (row["output_minio_key"], row["preview_minio_key"]) if key]
