"""The maintenance schedules: one per job, on by default, each skipping a tick while its job is
still in flight, all loading in the project's definitions as Dagster validates them."""

from __future__ import annotations

from dagster import DagsterRunStatus, Definitions, RunRequest, build_schedule_context
from dagster._core.test_utils import create_run_for_test

from render_pipeline.definitions import build_definitions
from render_pipeline.maintenance.definitions import maintenance_definitions
from render_pipeline.maintenance.jobs import MAINTENANCE_JOBS
from render_pipeline.maintenance.schedules import SCHEDULES, stale_render_reaper_schedule
from render_pipeline.maintenance.storage_usage import storage_usage
from render_pipeline.settings import load_settings


def test_the_slice_loads_in_the_project_definitions_as_dagster_validates_them():
    assert all(s.default_status.value == "RUNNING" for s in SCHEDULES)
    assert {s.job_name for s in SCHEDULES} == {job.name for job in MAINTENANCE_JOBS}
    maintenance = maintenance_definitions()  # the slice holds every job its schedules run
    assert {job.name for job in maintenance.jobs} == {job.name for job in MAINTENANCE_JOBS}
    assert [asset.key for asset in maintenance.assets] == [storage_usage.key]

    # What `dagster dev` and the daemon load: every op's resources provided, every schedule's
    # job and asset selection resolvable.
    project = build_definitions(load_settings({}))
    Definitions.validate_loadable(project)
    repository = project.get_repository_def()
    for schedule_def in SCHEDULES:
        assert repository.get_schedule_def(schedule_def.name).job_name == schedule_def.job_name
        assert repository.get_job(schedule_def.job_name).name == schedule_def.job_name


def test_schedules_request_runs_and_skip_while_one_is_in_flight(instance):
    with build_schedule_context(instance=instance) as context:
        assert isinstance(stale_render_reaper_schedule.evaluate_tick(context).run_requests[0], RunRequest)
    create_run_for_test(instance, job_name="stale_render_reaper_job", status=DagsterRunStatus.STARTED)
    with build_schedule_context(instance=instance) as context:
        data = stale_render_reaper_schedule.evaluate_tick(context)
    assert not data.run_requests and "still running" in data.skip_message
