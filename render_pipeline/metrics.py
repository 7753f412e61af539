"""Prometheus exporter with the old pop-render service's metric names.

A custom collector reads the current state on each scrape — a few bounded queries on the
`renders` indexes, the Dagster run queue and the latest `storage_usage` materialization — so
the exporter holds no state and any number of replicas agree.  A dependency that is down
turns its `health_check_status` to 0 and drops only the metrics that need it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter
from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.object_store import ObjectStore
from render_pipeline.run_queue import read_pause
from render_pipeline.store import maintenance as store

log = logging.getLogger(__name__)

# Render durations: a render is ~0.1–1 s on two cores; the old service's P90 alert was at 30 s.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
STORAGE_ASSET = AssetKey("storage_usage")
STORAGE_PREFIXES = ("uploads", "renders", "other")
METRIC_NAMES = (
    "render_jobs_total",
    "render_duration_seconds",
    "render_queue_depth",
    "renders_in_progress",
    "render_storage_bytes_total",
    "db_connections_active",
    "health_check_status",
    "render_pipeline_paused",
)


@dataclass
class _Cached:
    value: object
    at: float


class RenderPipelineCollector(Collector):
    """Collects on scrape.  The duration histogram scans every completed render's metadata, so
    it is recomputed at most every ``histogram_ttl_seconds``; everything else is live."""

    def __init__(
        self,
        database: PostgresResource,
        object_store: ObjectStore,
        instance: Callable[[], DagsterInstance | None],
        *,
        histogram_ttl_seconds: float = 60.0,
    ) -> None:
        self._database = database
        self._object_store = object_store
        self._instance = instance
        self._ttl = histogram_ttl_seconds
        self._histogram: _Cached | None = None
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        return []  # collected dynamically; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        health = GaugeMetricFamily("health_check_status", "1 if the dependency answered this scrape, else 0",
                                   labels=["dependency"])
        queued_renders = None
        try:
            metrics, queued_renders = self._database_metrics()
            yield from metrics
            health.add_metric(["database"], 1)
        except Exception as exc:  # a scrape must report the outage, not fail
            log.warning(f"database metrics unavailable: {exc}")
            health.add_metric(["database"], 0)

        try:
            self._object_store.list_page("", page_size=1)
            health.add_metric(["object_store"], 1)
        except Exception as exc:
            log.warning(f"object store unavailable: {exc}")
            health.add_metric(["object_store"], 0)

        queue = GaugeMetricFamily("render_queue_depth", "Renders waiting: queued render rows plus queued Dagster runs")
        try:
            instance = self._instance()
            if instance is None:
                raise RuntimeError("no Dagster instance (DAGSTER_HOME not set)")
            queued_runs = instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.QUEUED]))
            yield self._storage_metric(instance)
            yield self._pause_metric(instance)
            if queued_renders is not None:
                queue.add_metric([], queued_renders + queued_runs)
                yield queue
            health.add_metric(["dagster"], 1)
        except Exception as exc:
            log.warning(f"Dagster instance unavailable: {exc}")
            health.add_metric(["dagster"], 0)
        yield health

    def _database_metrics(self) -> tuple[list[Metric], int]:
        """The table-derived metrics, and the number of queued renders."""
        with self._database.connection() as conn:
            counts = store.render_counts(conn)
            connections = store.connections_active(conn)
        jobs = CounterMetricFamily("render_jobs", "Renders by status and style (from the renders table)",
                                   labels=["status", "style"])
        for row in counts:
            jobs.add_metric([row["status"], row["style_id"]], row["n"])
        in_progress = sum(row["n"] for row in counts if row["status"] == "started")
        queued = sum(row["n"] for row in counts if row["status"] == "queued")
        return [
            jobs,
            GaugeMetricFamily("renders_in_progress", "Renders currently started", value=in_progress),
            GaugeMetricFamily("db_connections_active", "Connections to the app database", value=connections),
            self._duration_metric(),
        ], queued

    def _duration_metric(self) -> Metric:
        with self._lock:
            if self._histogram is None or time.monotonic() - self._histogram.at > self._ttl:
                with self._database.connection() as conn:
                    rows = store.duration_histogram(conn, DURATION_BUCKETS)
                self._histogram = _Cached(_histogram_family(rows), time.monotonic())
            return self._histogram.value

    def _pause_metric(self, instance: DagsterInstance) -> Metric:
        """1 while `render-pipeline pause` holds intake and dequeue; the reason is a label."""
        record = read_pause(instance)
        family = GaugeMetricFamily("render_pipeline_paused",
                                   "1 while intake and dequeue are paused (render-pipeline pause), else 0",
                                   labels=["reason", "since"])
        if record is None:
            family.add_metric(["", ""], 0)
        else:
            family.add_metric([record.reason, f"{record.since:.0f}"], 1)
        return family

    def _storage_metric(self, instance: DagsterInstance) -> Metric:
        family = GaugeMetricFamily("render_storage_bytes_total", "Object-store bytes per prefix (storage_usage asset)",
                                   labels=["prefix"])
        event = instance.get_latest_materialization_event(STORAGE_ASSET)
        if event is not None and event.asset_materialization is not None:
            metadata = event.asset_materialization.metadata
            for prefix in STORAGE_PREFIXES:
                if f"{prefix}_bytes" in metadata:
                    family.add_metric([prefix], metadata[f"{prefix}_bytes"].value)
        return family


def _histogram_family(rows: list[dict]) -> HistogramMetricFamily:
    """Cumulative `le` buckets per style from (style, number of bounds ≥ duration) counts."""
    family = HistogramMetricFamily("render_duration_seconds", "Render duration (all stages) of completed renders",
                                   labels=["style"])
    per_style: dict[str, tuple[list[int], float]] = {}
    for row in rows:
        counts, total = per_style.setdefault(row["style_id"], ([0] * (len(DURATION_BUCKETS) + 1), 0.0))
        # k bounds are ≥ the duration → its smallest such bound is DURATION_BUCKETS[-k].
        index = len(DURATION_BUCKETS) - row["bounds_at_or_above"]
        counts[index] += row["n"]
        per_style[row["style_id"]] = (counts, total + float(row["total"]))
    for style, (counts, total) in sorted(per_style.items()):
        cumulative, buckets = 0, []
        for bound, count in zip((*map(str, DURATION_BUCKETS), "+Inf"), counts):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric([style], buckets, sum_value=total)
    return family


def serve(collector: RenderPipelineCollector, *, port: int, addr: str = "0.0.0.0"):
    """Serve /metrics in a background thread; returns (server, thread)."""
    registry = CollectorRegistry()
    registry.register(collector)
    return start_http_server(port, addr=addr, registry=registry)
