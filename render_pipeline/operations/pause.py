"""Pause and resume the pipeline for a deploy or an incident, losing nothing.

Pausing stops intake and dequeue with Dagster's own switches: every sensor and schedule that
requests runs is stopped (the run-status sensors that record failures keep going), and the run
queue launches nothing (`run_queue.PausableRunCoordinator`).  The pause record remembers which
sensors and schedules were running and how, so resuming gives back exactly those; one an
operator had turned off stays off.  Objects uploaded meanwhile are found by the uploads
sensor's listing cycle after resume, through the same claim as always, so each is requested
once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.definitions.sensor_definition import SensorType
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.remote_representation.code_location import InProcessCodeLocation
from dagster._core.remote_representation.external import RemoteRepository, RemoteSchedule, RemoteSensor
from dagster._core.scheduler.instigation import InstigatorStatus
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from render_pipeline.maintenance.dead_runs import dead_run_sensor
from render_pipeline.render.job import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, PARTITION_TAG
from render_pipeline.run_queue import PauseRecord, StoppedInstigator, read_pause, write_pause

CODE_LOCATION = "render_pipeline"  # workspace.yaml's location_name: instigator ids derive from it
DEFINITIONS_MODULE = "render_pipeline.definitions"


class AlreadyPaused(RuntimeError):
    def __init__(self, record: PauseRecord) -> None:
        super().__init__(f"already paused since {format_since(record)}: {record.reason!r}; nothing changed")
        self.record = record


class NotPaused(RuntimeError):
    def __init__(self) -> None:
        super().__init__("not paused; nothing changed")


@dataclass(frozen=True)
class RunInProgress:
    run_id: str
    job_name: str
    status: str
    partitions: str
    running_seconds: float

    def describe(self) -> str:
        return (f"{self.run_id[:8]} {self.job_name} {self.status.lower()} for {self.running_seconds:.0f} s"
                + (f" ({self.partitions})" if self.partitions else ""))


@contextmanager
def code_location(instance: DagsterInstance) -> Iterator[RemoteRepository]:
    """The project's repository, loaded in this process under the workspace's location name."""
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name=DEFINITIONS_MODULE),
        location_name=CODE_LOCATION,
    )
    with InProcessCodeLocation(origin, instance) as location:
        (repository,) = location.get_repositories().values()
        yield repository


def requesting_instigators(repository: RemoteRepository) -> list[RemoteSensor | RemoteSchedule]:
    """The sensors and schedules that request runs: all but the run-status sensors and the
    dead-run sensor, which only end runs and keep doing so while the queue is paused."""
    sensors = [s for s in repository.get_sensors()
               if s.sensor_type != SensorType.RUN_STATUS and s.name != dead_run_sensor.name]
    return [*sensors, *repository.get_schedules()]


def pause(instance: DagsterInstance, reason: str) -> PauseRecord:
    """Stop dequeue, then intake; returns the record naming what was stopped."""
    existing = read_pause(instance)
    if existing is not None:
        raise AlreadyPaused(existing)
    with code_location(instance) as repository:
        running = [(item, _stored_status(instance, item)) for item in requesting_instigators(repository)]
        running = [(item, status) for item, status in running if status is not None]
        record = PauseRecord(
            since=time.time(),
            reason=reason,
            stopped=tuple(StoppedInstigator(item.name, _kind(item), status.value) for item, status in running),
        )
        write_pause(instance, record)
        for item, _status in running:
            if isinstance(item, RemoteSensor):
                instance.stop_sensor(item.get_remote_origin_id(), item.selector_id, item)
            else:
                instance.stop_schedule(item.get_remote_origin_id(), item.selector_id, item)
    return record


def resume(instance: DagsterInstance) -> tuple[PauseRecord, list[str], list[str]]:
    """Give back what pausing stopped; returns (record, restarted names, names gone from code)."""
    record = read_pause(instance)
    if record is None:
        raise NotPaused()
    restarted, missing = [], []
    with code_location(instance) as repository:
        by_name = {(item.name, _kind(item)): item for item in requesting_instigators(repository)}
        for stopped in record.stopped:
            item = by_name.get((stopped.name, stopped.kind))
            if item is None:
                missing.append(stopped.name)
                continue
            if _stored_status(instance, item) is None:  # not started by someone meanwhile
                _restore(instance, item, InstigatorStatus(stopped.status_before))
            restarted.append(stopped.name)
    write_pause(instance, None)
    return record, restarted, missing


def runs_in_progress(instance: DagsterInstance, now: float | None = None) -> list[RunInProgress]:
    now = time.time() if now is None else now
    runs = []
    for record in instance.get_run_records(RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES))):
        run = record.dagster_run
        partitions = _partitions_of(run.tags)
        started = record.start_time or record.create_timestamp.timestamp()
        runs.append(RunInProgress(run.run_id, run.job_name, run.status.value, partitions, max(0.0, now - started)))
    return runs


def queued_run_count(instance: DagsterInstance) -> int:
    return instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.QUEUED]))


def _partitions_of(tags) -> str:
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG]
    start, end = tags.get(PARTITION_RANGE_START_TAG), tags.get(PARTITION_RANGE_END_TAG)
    return f"{start} … {end}" if start and end else ""


def format_since(record: PauseRecord) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record.since))


def _kind(item: RemoteSensor | RemoteSchedule) -> str:
    return "sensor" if isinstance(item, RemoteSensor) else "schedule"


def _stored_status(instance: DagsterInstance, item: RemoteSensor | RemoteSchedule) -> InstigatorStatus | None:
    """How the item is running (RUNNING or DECLARED_IN_CODE), or None when it is stopped."""
    stored = instance.get_instigator_state(item.get_remote_origin_id(), item.selector_id)
    current = item.get_current_instigator_state(stored)
    if not current.is_running:
        return None
    return stored.status if stored is not None and stored.status == InstigatorStatus.RUNNING \
        else InstigatorStatus.DECLARED_IN_CODE


def _restore(instance: DagsterInstance, item: RemoteSensor | RemoteSchedule, status: InstigatorStatus) -> None:
    if isinstance(item, RemoteSensor):
        (instance.reset_sensor if status == InstigatorStatus.DECLARED_IN_CODE else instance.start_sensor)(item)
    elif status == InstigatorStatus.DECLARED_IN_CODE:
        instance.reset_schedule(item)
    else:
        instance.start_schedule(item)
