"""Drive the pipeline like the daemon does, and audit the end state against the bucket.

`Pipeline` keeps the upload sensor's cursor between ticks, executes run requests (skipping a
run key that already ran, as the daemon does), delivers failed runs to the run-failure sensor
and evaluates the requeue sensor.  `audit` compares every object with every row: the
reliability promises (nothing lost, nothing orphaned, every failure explained) are checked
there, in one place, for every scenario.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import yaml
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    RunRequest,
    RunsFilter,
    build_run_status_sensor_context,
)

from dagster._daemon.auto_run_reexecution.auto_run_reexecution import should_retry

from render_pipeline.keys import (
    RENDERS_PREFIX,
    UPLOADS_PREFIX,
    asset_id_for,
    render_id_for,
    render_object_keys,
    storable_key,
)
from render_pipeline.resources.database import PostgresResource
from render_pipeline_tests.orchestration_helpers import execute, tick


DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"
# Tags a retry does not take from its parent run: they describe the parent's own outcome.
_NOT_INHERITED_TAGS = {"dagster/run_key", "dagster/will_retry", "dagster/failure_reason", "dagster/retry_number",
                       "dagster/parent_run_id", "dagster/root_run_id"}


def list_keys(client, bucket: str, prefix: str) -> dict[str, str]:
    """Every key under ``prefix`` → ETag (paginated)."""
    keys: dict[str, str] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            keys[item["Key"]] = item["ETag"].strip('"')
    return keys


@dataclass
class TickStats:
    seconds: float
    run_requests: int
    uploads: int


@dataclass
class Pipeline:
    defs: Definitions
    instance: DagsterInstance
    cursor: str | None = None
    ticks: list[TickStats] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)

    def tick(self) -> list[RunRequest]:
        started = time.perf_counter()
        result = tick(self.defs, self.instance, "uploads_sensor", self.cursor)
        requests = list(result.run_requests or [])
        self.ticks.append(TickStats(
            time.perf_counter() - started, len(requests),
            sum(int(r.tags.get("render_pipeline/uploads", "1")) for r in requests),
        ))
        self.cursor = result.cursor
        return requests

    def launch(self, requests: Iterable[RunRequest]) -> list:
        """Execute each request unless a run with its run key exists (the daemon's dedup)."""
        outcomes = []
        for request in requests:
            if request.run_key and self.instance.get_runs(
                filters=RunsFilter(tags={"dagster/run_key": request.run_key}), limit=1
            ):
                continue
            outcome = execute(self.defs, self.instance, request)
            self.run_ids.append(outcome.run_id)
            if not outcome.success:
                self.notify_failure(outcome.run_id)
            outcomes.append(outcome)
        return outcomes

    def _execute_only(self, request: RunRequest):
        """Execute without delivering a failure to the failure sensor (the test does it)."""
        outcome = execute(self.defs, self.instance, request)
        self.run_ids.append(outcome.run_id)
        return outcome

    def notify_failure(self, run_id: str) -> None:
        """Deliver a failed run to render_run_failure_sensor, as the daemon would."""
        run = self.instance.get_run_by_id(run_id)
        assert run.status == DagsterRunStatus.FAILURE, run.status
        records = self.instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE).records
        sensor = self.defs.resolve_sensor_def("render_run_failure_sensor")
        with build_run_status_sensor_context(
            sensor_name=sensor.name, dagster_instance=self.instance, dagster_run=run,
            dagster_event=records[0].event_log_entry.dagster_event, resources=self.defs.resources,
        ) as context:
            sensor(context.for_run_failure())

    def retry(self, run_id: str):
        """The daemon's automatic retry of a failed run: Dagster's own rule (``should_retry``:
        run_retries, the run's tags, why it failed) decides whether there is one; it then runs
        the same partitions, selection and config as a new run (ALL_STEPS).  None if no retry."""
        run = self.instance.get_run_by_id(run_id)
        if not should_retry(run, self.instance):
            return None
        tags = {k: v for k, v in run.tags.items() if k not in _NOT_INHERITED_TAGS}
        tags.update({"dagster/parent_run_id": run.run_id, "dagster/root_run_id": run.root_run_id or run.run_id,
                     "dagster/retry_number": str(int(run.tags.get("dagster/retry_number", "0")) + 1)})
        request = RunRequest(run_config=run.run_config, tags=tags,
                             asset_selection=list(run.asset_selection) if run.asset_selection else None)
        outcome = execute(self.defs, self.instance, request)
        self.run_ids.append(outcome.run_id)
        return outcome

    def requeue_tick(self) -> list[RunRequest]:
        return list(tick(self.defs, self.instance, "requeue_sensor").run_requests or [])

    def drain(self, *, max_ticks: int = 50) -> list:
        """Tick and launch until a full listing cycle requests nothing new."""
        outcomes = []
        idle_cycles = 0
        for _ in range(max_ticks):
            requests = self.tick()
            outcomes += self.launch(requests)
            idle_cycles = idle_cycles + 1 if not requests and self._cycle_wrapped() else 0
            if idle_cycles:
                return outcomes
        raise AssertionError(f"the upload sensor still had work after {max_ticks} ticks")

    def _cycle_wrapped(self) -> bool:
        import json

        return self.cursor is not None and json.loads(self.cursor).get("after") is None


def requeue(database: PostgresResource, where: str, params: Sequence = (), reason: str = "reliability test") -> int:
    """The documented requeue contract (what `render-pipeline requeue` does)."""
    with database.connection() as conn:
        return conn.execute(
            "UPDATE renders SET status='queued', error_message=NULL, dagster_run_id=NULL, "
            "metadata = (metadata - 'requeue_run') || jsonb_build_object('requeued_at', now(), 'requeue_reason', %s::text) "
            f"WHERE {where}",
            (reason, *params),
        ).rowcount


@dataclass
class Audit:
    """Objects vs rows.  Every list should be empty after convergence."""

    uploads: int
    render_objects: int
    assets: Counter
    renders: Counter
    lost: list[str]
    orphans: list[str]
    missing_objects: list[str]
    unexplained: list[str]
    unfinished: list[str]
    duplicates: list[str]

    @property
    def problems(self) -> dict[str, list[str]]:
        return {
            name: values[:10] for name in ("lost", "orphans", "missing_objects", "unexplained", "unfinished", "duplicates")
            if (values := getattr(self, name))
        }

    def summary(self) -> str:
        return (
            f"uploads={self.uploads} assets={dict(self.assets)} renders={dict(self.renders)} "
            f"render_objects={self.render_objects} lost={len(self.lost)} orphans={len(self.orphans)} "
            f"unexplained={len(self.unexplained)} unfinished={len(self.unfinished)}"
        )


def audit(database: PostgresResource, objects: dict[str, str], *, styles: Sequence[str],
          presets: Sequence[str]) -> Audit:
    """``objects``: every key in the bucket (or local root) → ETag.

    - lost: an upload object whose current version has no `valid`/`invalid` row, or a valid
      upload missing one of its (style, preset) render rows;
    - unfinished: rows still `queued`/`started`, or uploads still `registered`;
    - unexplained: `failed`/`invalid` rows without a reason;
    - orphans: objects under renders/ that no completed row points at;
    - missing_objects: completed rows whose output or preview object is absent.
    """
    with database.connection() as conn:
        assets = conn.execute("SELECT * FROM assets").fetchall()
        renders = conn.execute("SELECT * FROM renders").fetchall()
    uploads = {k: e for k, e in objects.items() if k.startswith(UPLOADS_PREFIX)}
    render_objects = {k for k in objects if k.startswith(RENDERS_PREFIX)}
    lost, unfinished = _lost_and_registered(uploads, assets, renders, styles=styles, presets=presets)
    unexplained = []
    for row in assets:
        if row["status"] == "invalid" and not row["error_message"]:
            unexplained.append(f"upload {row['object_key']!r} invalid without a reason")
    for row in renders:
        if row["status"] in ("queued", "started"):
            unfinished.append(f"render {row['id']} {row['status']}")
        if row["status"] == "failed" and not row["error_message"]:
            unexplained.append(f"render {row['id']} failed without a reason")
    referenced = {
        key for row in renders if row["status"] == "completed"
        for key in (row["output_minio_key"], row["preview_minio_key"])
    }
    missing = [
        f"render {row['id']}: {key}" for row in renders if row["status"] == "completed"
        for key in (row["output_minio_key"], row["preview_minio_key"]) if key not in render_objects
    ]
    expected_keys = {key for row in renders for key in render_object_keys(row["id"])}
    duplicates = [k for k in render_objects if k not in expected_keys]  # not a render's deterministic key
    return Audit(
        uploads=len(uploads),
        render_objects=len(render_objects),
        assets=Counter(a["status"] for a in assets),
        renders=Counter(r["status"] for r in renders),
        lost=lost,
        orphans=sorted(render_objects - referenced),
        missing_objects=missing,
        unexplained=unexplained,
        unfinished=unfinished,
        duplicates=duplicates,
    )


def project_storage(postgres_url: str) -> dict:
    """Instance overrides naming the project's own Dagster storage, as dagster.yaml does, with
    dagster.yaml's run retries (what the daemon would do after a failure)."""
    return {"storage": {"custom": {"module": "render_pipeline.dagster_storage", "class": "PooledPostgresStorage",
                                   "config": {"postgres_url": postgres_url}}},
            "run_retries": yaml.safe_load(DAGSTER_YAML.read_text())["run_retries"]}


def _lost_and_registered(uploads: dict[str, str], assets: Sequence[dict], renders: Sequence[dict], *,
                         styles: Sequence[str], presets: Sequence[str]) -> tuple[list[str], list[str]]:
    """Uploads whose current version has no finished row or lacks a render row, and uploads
    still `registered`."""
    by_key = {a["object_key"]: a for a in assets}
    render_ids = {r["id"] for r in renders}
    lost, registered = [], []
    for key, etag in uploads.items():
        row = by_key.get(storable_key(key))
        if row is None or row["etag"] != etag:
            lost.append(f"{key!r}: {'no row' if row is None else 'row is for another version'}")
        elif row["status"] == "registered":
            registered.append(f"upload {key!r} still registered")
        elif row["status"] == "valid":
            asset_id = asset_id_for(key)
            lost += [f"{key!r}: no {style}/{preset} render row" for style in styles for preset in presets
                     if render_id_for(asset_id, style, preset) not in render_ids]
    return lost, registered
