"""The stale-render reaper: renders left `started` or `queued` by runs that are gone or stuck."""

import functools
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from logging import Logger
from operator import itemgetter

from dagster import Config, DagsterInstance, RunsFilter
from dagster._core.launcher import DefaultRunLauncher
from pydantic import field_validator

from render_pipeline.maintenance.common import (
    ALIVE_RUN_STATUSES,
    FINISHED_RUN_STATUSES,
    RENDER_KIND,
    in_range,
    keyset_batches,
)
from render_pipeline.maintenance.dead_runs import end_run_of_dead_worker, worker_died_message
from render_pipeline.operations.health import worker_alive, worker_process
from render_pipeline.render.job import partition_keys_of
from render_pipeline.render.partitions import uploads_partitions
from render_pipeline.resources.database import PostgresResource
from render_pipeline.store import maintenance as store

MAX_IN_FLIGHT_RUNS = 5000  # alive render runs inspected by the queued-render check


class ReaperConfig(Config):
    started_limit_minutes: int = 60
    cancel_overdue_runs: bool = True
    queued_limit_minutes: int = 360
    max_requeues: int = 3
    dry_run: bool = False
    batch_size: int = 500

    @field_validator("started_limit_minutes", "queued_limit_minutes")
    @classmethod
    def _limit(cls, value: int, info) -> int:
        return in_range(info.field_name, value, 5, 7 * 24 * 60, " minutes")

    @field_validator("max_requeues")
    @classmethod
    def _requeues(cls, value: int) -> int:
        return in_range("max_requeues", value, 0, 20)

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, value: int) -> int:
        return in_range("batch_size", value, 1, 5000)


@dataclass
class ReaperReport:
    dry_run: bool
    stale_started: int = 0
    started_failed: int = 0
    runs_missing: int = 0
    runs_finished: int = 0
    runs_canceled: int = 0
    runs_failed_worker_died: int = 0
    left_to_run_monitoring: int = 0
    stale_queued: int = 0
    queued_waiting_for_run: int = 0
    queued_requeued: int = 0
    queued_failed: int = 0


def reap_stale_renders(
    database: PostgresResource, instance: DagsterInstance, config: ReaperConfig, log: Logger
) -> ReaperReport:
    """`started` renders past the limit whose run is gone, finished or overdue → `failed`;
    `queued` renders that no run picked up → requeued (or `failed` after ``max_requeues``).

    A queued render never failed — its run request was lost (sensor stopped, run deleted) — so
    it is requeued rather than failed: the requeue sensor then launches a fresh run.  The
    ``max_requeues`` cap turns a render that can never get a run into a visible failure.
    """
    report = ReaperReport(dry_run=config.dry_run)
    _reap_started(database, instance, config, report, log)
    _reap_queued(database, instance, config, report)
    return report


def _batches(
    database: PostgresResource, query, older_than: timedelta, batch_size: int
) -> Iterator[Sequence[dict]]:
    """The stale renders ``query`` finds, in batches by id, each read on its own connection."""

    def fetch(after: uuid.UUID) -> list[dict]:
        with database.connection() as conn:
            return query(conn, older_than=older_than, after_id=after, limit=batch_size)

    return keyset_batches(fetch, store.FIRST_ID, itemgetter("id"), limit=batch_size)


def _reap_started(database, instance, config: ReaperConfig, report: ReaperReport, log: Logger) -> None:
    started_limit = timedelta(minutes=config.started_limit_minutes)
    for rows in _batches(database, store.stale_started, started_limit, config.batch_size):
        report.stale_started += len(rows)
        by_run: dict[str | None, list[uuid.UUID]] = {}
        for row in rows:
            by_run.setdefault(row["dagster_run_id"], []).append(row["id"])
        for run_id, render_ids in by_run.items():
            reason = _reap_run(instance, run_id, started_limit, config, report, log)
            if reason is None:
                report.left_to_run_monitoring += len(render_ids)
            elif not config.dry_run:
                with database.connection() as conn:
                    report.started_failed += store.fail_stale_started(
                        conn, render_ids, older_than=started_limit, message=reason)


def _reap_queued(database, instance, config: ReaperConfig, report: ReaperReport) -> None:
    queued_limit = timedelta(minutes=config.queued_limit_minutes)
    reason = f"stale: queued for more than {queued_limit} with no run in flight"
    in_flight: set[str] | None = None
    for rows in _batches(database, store.stale_queued, queued_limit, config.batch_size):
        report.stale_queued += len(rows)
        if in_flight is None:
            in_flight = _partitions_in_flight(instance)
        orphaned = [row for row in rows if row["partition_key"] not in in_flight]
        report.queued_waiting_for_run += len(rows) - len(orphaned)
        requeue = [row["id"] for row in orphaned if row["requeues"] < config.max_requeues]
        give_up = [row["id"] for row in orphaned if row["requeues"] >= config.max_requeues]
        if config.dry_run:
            report.queued_requeued += len(requeue)
            report.queued_failed += len(give_up)
            continue
        with database.connection() as conn:
            report.queued_requeued += len(store.requeue(conn, requeue, reason=reason, from_statuses=("queued",)))
            report.queued_failed += store.fail_stale_queued(
                conn, give_up, older_than=queued_limit,
                message=f"{reason}, after {config.max_requeues} requeue(s); requeue by hand once the cause is fixed",
            )


def _reap_run(instance, run_id, limit, config, report, log) -> str | None:
    """Why the renders of this run are stale (and end it if it is overdue), or None to leave
    them to Dagster's run monitoring."""
    run = instance.get_run_by_id(run_id) if run_id else None
    if run is None:
        report.runs_missing += 1
        return f"stale: started more than {limit} ago and its Dagster run ({run_id or 'none'}) does not exist"
    if run.status in FINISHED_RUN_STATUSES:
        report.runs_finished += 1
        return f"stale: Dagster run {run_id} ended {run.status.value} without finishing this render"
    if run.status not in ALIVE_RUN_STATUSES or not config.cancel_overdue_runs:
        return None
    worker = worker_process(instance, run_id) if isinstance(instance.run_launcher, DefaultRunLauncher) else None
    if worker is not None and not worker_alive(*worker):
        pid = worker[0]
        # Nothing to ask the code server (it may be gone too): the run is ended directly.
        report.runs_failed_worker_died += 1
        if not config.dry_run:
            end_run_of_dead_worker(instance, run_id, pid)
            log.warning(f"run {run_id}: {worker_died_message(pid)}; marked failed by the stale-render reaper")
        return f"stale: Dagster run {run_id}: {worker_died_message(pid)}"
    report.runs_canceled += 1
    if not config.dry_run:
        _cancel(instance, run_id, f"canceled by the stale-render reaper: still {run.status.value} after {limit}", log)
    return f"stale: Dagster run {run_id} was still {run.status.value} after {limit}; canceled by the reaper"


def _cancel(instance: DagsterInstance, run_id: str, message: str, log: Logger) -> None:
    """Cancel through the coordinator (it dequeues a queued run or asks the launcher to stop
    the worker); a worker or code server that cannot answer, or refuses, does not stop the
    reaper: the run is then marked canceled directly."""
    try:
        canceled = instance.run_coordinator.cancel_run(run_id)
    except Exception as exc:  # e.g. DagsterUserCodeUnreachableError from a code server that is gone
        log.warning(f"run {run_id}: cancel request failed ({type(exc).__name__}); marking it canceled directly")
        canceled = False
    current = instance.get_run_by_id(run_id)
    if not canceled and current is not None and not current.is_finished:
        instance.report_run_canceled(current, message=message)
    log.warning(f"run {run_id}: {message}")


def _partitions_in_flight(instance: DagsterInstance) -> set[str]:
    """Upload partitions covered by a render run that is queued or running."""
    runs = instance.get_runs(RunsFilter(statuses=list(ALIVE_RUN_STATUSES), tags=RENDER_KIND), limit=MAX_IN_FLIGHT_RUNS)
    ordered_keys = functools.cache(lambda: tuple(instance.get_dynamic_partitions(uploads_partitions.name)))
    return {key for run in runs for key in partition_keys_of(run.tags, ordered_keys)}
