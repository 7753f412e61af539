"""`render-pipeline restore SRC`: put a backup back into a stopped stack and reconcile it with the
bucket; prints what it did and what the next `render-pipeline up` will do."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import psycopg

from render_pipeline.operations.backup import BackupError
from render_pipeline.operations.postgres_tools import ToolFailed
from render_pipeline.operations.restore import RestoreResult, restore
from render_pipeline.settings import first_line, load_settings
from render_pipeline.stack import StackRunning

def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("restore", help="restore a backup into a stopped stack, then reconcile with the bucket")
    parser.add_argument("source", type=Path, metavar="SRC", help="a directory written by `render-pipeline backup`")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        result = restore(settings, args.source)
    except (BackupError, StackRunning, ToolFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"error: PostgreSQL: {first_line(exc)}", file=sys.stderr)
        return 1
    for line in report_lines(result):
        print(line)
    return 0


def report_lines(result: RestoreResult) -> list[str]:
    lines = [f"migrations applied: {', '.join(result.migrations_applied)}" if result.migrations_applied
             else "schema already at this code's version"]
    diff = result.inventory
    lines.append(f"bucket against the backup's inventory: {_counts(diff.missing)} gone, {_counts(diff.changed)} "
                 f"changed, {_counts(diff.added)} new since the backup")
    lost = result.lost_outputs
    lines.append(f"reconciliation: {lost.requeued} completed render(s) had lost their objects: failed and requeued")
    lines.append(f"{lost.orphan_objects} render object(s) have no row (made after the backup): kept; re-rendering "
                 f"their uploads writes the same keys, orphan_reconciliation_job reports any left")
    runs = Counter(result.manifest["dagster_database"]["counts"]["runs_by_status"])
    renders = result.manifest["app_database"]["counts"]["renders_by_status"]
    lines += [
        f"restore took {result.seconds:.1f} s",
        "on the next `render-pipeline up`:",
        f"  the uploads sensor renders {result.uploads_to_render} upload(s) new, changed or unfinished since the "
        f"backup (its first listing cycle)",
        f"  the requeue sensor re-renders the {lost.requeued} requeued render(s)",
        f"  {runs['QUEUED']} run(s) queued at backup time start; "
        f"{renders.get('queued', 0) + renders.get('started', 0)} render(s) were queued or started then",
    ]
    if result.interrupted_runs:
        lines.append(f"  {result.interrupted_runs} run(s) executing at backup time were marked failed (their workers "
                     f"are gone): the failure sensor fails their unfinished renders, the daemon retries each once")
    return lines


def _counts(by_prefix: Counter) -> str:
    total = sum(by_prefix.values())
    if not total:
        return "0"
    return f"{total} ({', '.join(f'{prefix} {n}' for prefix, n in sorted(by_prefix.items()))})"
