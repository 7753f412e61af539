"""Pausing stops intake and dequeue through Dagster's own switches, and resuming gives back
exactly what was running: on a real instance with the project's run coordinator."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance
from dagster._core.test_utils import instance_for_test

from render_pipeline.operations.pause import (
    AlreadyPaused,
    NotPaused,
    code_location,
    pause,
    requesting_instigators,
    resume,
)
from render_pipeline.run_queue import read_pause

PAUSABLE_QUEUE = {"run_coordinator": {"module": "render_pipeline.run_queue", "class": "PausableRunCoordinator",
                                      "config": {"max_concurrent_runs": 2}}}


@pytest.fixture
def queued_instance():
    with instance_for_test(overrides=PAUSABLE_QUEUE) as instance:
        yield instance


def _running(instance: DagsterInstance) -> dict[str, bool]:
    with code_location(instance) as repository:
        items = [*repository.get_sensors(), *repository.get_schedules()]
        return {item.name: item.get_current_instigator_state(
            instance.get_instigator_state(item.get_remote_origin_id(), item.selector_id)).is_running
            for item in items}


def _stop(instance: DagsterInstance, name: str) -> None:
    with code_location(instance) as repository:
        schedule = repository.get_schedule(name)
        instance.stop_schedule(schedule.get_remote_origin_id(), schedule.selector_id, schedule)


def test_pause_stops_intake_and_dequeue_and_resume_gives_back_exactly_what_ran(queued_instance):
    instance = queued_instance
    _stop(instance, "storage_usage_hourly")  # an operator turned this one off before the pause
    before = _running(instance)
    assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 2

    record = pause(instance, "deploy 1.4")
    stopped = {item.name for item in record.stopped}
    assert "uploads_sensor" in stopped and "requeue_sensor" in stopped and "storage_usage_hourly" not in stopped
    during = _running(instance)
    assert not during["uploads_sensor"] and not during["retention_cleanup_daily"]
    assert during["render_run_failure_sensor"]  # failures of draining runs are still recorded
    assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 0
    assert read_pause(instance).reason == "deploy 1.4"

    with pytest.raises(AlreadyPaused, match="already paused since .*deploy 1.4.*nothing changed"):
        pause(instance, "again")
    assert _running(instance) == during

    _record, restarted, missing = resume(instance)
    assert set(restarted) == stopped and not missing
    assert _running(instance) == before  # the operator's stopped schedule stays stopped
    assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 2
    assert read_pause(instance) is None
    with pytest.raises(NotPaused):
        resume(instance)


def test_resume_restores_a_sensor_declared_running_in_code_to_its_code_default(queued_instance):
    instance = queued_instance
    pause(instance, "incident")
    resume(instance)
    with code_location(instance) as repository:
        sensor = repository.get_sensor("uploads_sensor")
        stored = instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
    # Back to "as the code declares" (DECLARED_IN_CODE), not pinned RUNNING by the pause.
    assert stored.status.value == "DECLARED_IN_CODE"


def test_only_run_status_sensors_and_the_dead_run_sensor_keep_running(queued_instance):
    with code_location(queued_instance) as repository:
        names = {item.name for item in requesting_instigators(repository)}
        every = {item.name for item in [*repository.get_sensors(), *repository.get_schedules()]}
    assert every - names == {"render_run_failure_sensor", "render_run_canceled_sensor", "dead_run_sensor"}
