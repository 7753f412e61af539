"""The Prometheus exporter, scraped over HTTP on 127.0.0.1, against seeded data."""

from __future__ import annotations

import urllib.request
from datetime import timedelta

from dagster import DagsterRunStatus, materialize
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from prometheus_client.parser import text_string_to_metric_families

from render_pipeline.maintenance.storage_usage import storage_usage
from render_pipeline.metrics import METRIC_NAMES, RenderPipelineCollector, serve
from render_pipeline_tests.conftest import make_s3_store
from render_pipeline_tests.maintenance.scenario import STYLES, insert_asset, insert_render, put_all


def _queued_run(instance, run_id: str) -> None:
    """A run waiting in the QueuedRunCoordinator's queue (such runs carry their code origin)."""
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="render_pipeline.definitions")), "__repository__"), "render_uploads")
    instance.add_run(DagsterRun(job_name="render_uploads", run_id=run_id, status=DagsterRunStatus.QUEUED,
                                remote_job_origin=origin))


def _scrape(collector) -> tuple[str, dict]:
    server, thread = serve(collector, port=0, addr="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        thread.join(5)
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return text, samples


def test_every_metric_with_values_from_the_stack(database, local_store, instance):
    with database.transaction() as conn:
        assets = [insert_asset(conn, f"uploads/m-{i}/a.png") for i in range(3)]
        for i, seconds in enumerate((0.08, 0.3, 0.5, 4.0)):  # pop-poster on assets 0..2, halftone on 0
            insert_render(conn, assets[i % 3], STYLES[i // 3], "completed", age=timedelta(hours=1),
                          duration_ms=seconds * 1000)
        insert_render(conn, assets[1], "halftone", "archived", age=timedelta(days=100), duration_ms=1500)
        insert_render(conn, assets[2], "halftone", "failed", age=timedelta(hours=1))
        insert_render(conn, assets[0], "duotone", "started", age=timedelta(minutes=1))
        insert_render(conn, assets[1], "duotone", "queued", age=timedelta(minutes=1))
        insert_render(conn, assets[2], "duotone", "queued", age=timedelta(minutes=1))
    _queued_run(instance, "queued-run-1")
    put_all(local_store, [("uploads/m-0/a.png", b"x" * 300), ("renders/r/output.png", b"y" * 1200)])
    materialize([storage_usage], resources={"object_store": local_store}, instance=instance)

    text, samples = _scrape(RenderPipelineCollector(database, local_store, lambda: instance))
    for name in METRIC_NAMES:
        assert name in text, name

    def value(name, **labels):
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("render_jobs_total", status="completed", style="pop-poster") == 3
    assert value("render_jobs_total", status="completed", style="halftone") == 2  # one of them archived
    assert value("render_jobs_total", status="failed", style="halftone") == 1
    assert value("render_queue_depth") == 2 + 1  # two queued renders + one queued Dagster run
    assert value("renders_in_progress") == 1
    # pop-poster took 0.08, 0.3, 0.5 s; 0.5 lies exactly on a bound and counts in it
    assert value("render_duration_seconds_bucket", style="pop-poster", le="0.1") == 1
    assert value("render_duration_seconds_bucket", style="pop-poster", le="0.5") == 3
    assert value("render_duration_seconds_bucket", style="halftone", le="2.5") == 1
    assert value("render_duration_seconds_bucket", style="halftone", le="5.0") == 2
    assert value("render_duration_seconds_count", style="halftone") == 2
    assert abs(value("render_duration_seconds_sum", style="pop-poster") - 0.88) < 1e-9
    assert value("render_storage_bytes_total", prefix="uploads") == 300
    assert value("render_storage_bytes_total", prefix="renders") == 1200
    assert value("db_connections_active") >= 1
    for dependency in ("database", "object_store", "dagster"):
        assert value("health_check_status", dependency=dependency) == 1


def test_a_dependency_down_reads_zero_and_the_rest_is_still_served(database, instance):
    dead_store = make_s3_store("http://127.0.0.1:1", "nowhere-bucket", max_attempts=1, connect_timeout=1.0)
    _, samples = _scrape(RenderPipelineCollector(database, dead_store, lambda: instance))
    assert samples[("health_check_status", (("dependency", "object_store"),))] == 0
    assert samples[("health_check_status", (("dependency", "database"),))] == 1
    assert samples[("renders_in_progress", ())] == 0
