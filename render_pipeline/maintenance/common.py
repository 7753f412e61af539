"""What the maintenance procedures share: run kinds and statuses, config range checks."""

from dagster import DagsterRunStatus

RENDER_KIND = {"render_pipeline/kind": "render"}
MAINTENANCE_KIND = {"render_pipeline/kind": "maintenance"}
ALIVE_RUN_STATUSES = (
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
)
FINISHED_RUN_STATUSES = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
LIST_PAGE_SIZE = 1000


def in_range(name: str, value: int, low: int, high: int, unit: str = "") -> int:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}{unit} (got {value})")
    return value


def render_keys(row: dict) -> list[str]:
    return [key for key in (row["output_minio_key"], row["preview_minio_key"]) if key]
