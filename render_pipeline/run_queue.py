"""The run queue's pause switch, kept in Dagster's own storage.

`render-pipeline pause` writes a pause record into the instance's key-value store; while it is
there, Dagster's queued run coordinator (this subclass, named in `dagster.yaml`) reports a
run limit of 0, Dagster's documented "stop any runs from launching" setting.  The daemon reads
the limit on every dequeue pass, so queued runs wait and the UI's run-queue settings show the
0; runs in progress go on.  Clearing the record restores `max_concurrent_runs` from the config.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from dagster import DagsterInstance
from dagster._core.run_coordinator.queued_run_coordinator import QueuedRunCoordinator, RunQueueConfig

PAUSE_KEY = "render_pipeline/pause"


@dataclass(frozen=True)
class StoppedInstigator:
    """A sensor or schedule that pausing stopped, and the stored status to give back."""

    name: str
    kind: str  # "sensor" or "schedule"
    status_before: str  # Dagster's InstigatorStatus value: RUNNING or DECLARED_IN_CODE


@dataclass(frozen=True)
class PauseRecord:
    since: float
    reason: str
    stopped: tuple[StoppedInstigator, ...] = field(default=())

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PauseRecord:
        raw = json.loads(text)
        return cls(since=float(raw["since"]), reason=str(raw["reason"]),
                   stopped=tuple(StoppedInstigator(**item) for item in raw.get("stopped", ())))


def read_pause(instance: DagsterInstance) -> PauseRecord | None:
    text = instance.run_storage.get_cursor_values({PAUSE_KEY}).get(PAUSE_KEY)
    return PauseRecord.from_json(text) if text else None


def write_pause(instance: DagsterInstance, record: PauseRecord | None) -> None:
    """Store the record, or clear it (an empty value: the store has no delete)."""
    instance.run_storage.set_cursor_values({PAUSE_KEY: record.to_json() if record else ""})


class PausableRunCoordinator(QueuedRunCoordinator):
    """Dagster's QueuedRunCoordinator, launching nothing while a pause record exists."""

    def get_run_queue_config(self) -> RunQueueConfig:
        config = super().get_run_queue_config()
        if self.has_instance and read_pause(self._instance) is not None:
            return config._replace(max_concurrent_runs=0)
        return config
