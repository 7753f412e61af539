"""`render-pipeline pause [--drain] [--reason TEXT]` and `render-pipeline resume`.

Pause before a deploy or during an incident: intake and dequeue stop at once, runs in
progress go on (`--drain` waits for them and says which).  Resume gives back exactly the
sensors and schedules that were running.  See `render_pipeline.operations.pause`.
"""

from __future__ import annotations

import argparse
import sys
import time

from render_pipeline.operations.pause import (
    AlreadyPaused,
    NotPaused,
    format_since,
    pause,
    queued_run_count,
    resume,
    runs_in_progress,
)
from render_pipeline.settings import load_settings
from render_pipeline.stack import stack_instance

DRAIN_POLL_SECONDS = 2.0
DRAIN_REPORT_SECONDS = 30.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pause", help="stop intake and dequeue (sensors, schedules, run queue)")
    parser.add_argument("--reason", default="paused by an operator", help="shown in doctor, metrics and the UI")
    parser.add_argument("--drain", action="store_true", help="then wait until no run is in progress")
    parser.add_argument("--timeout", type=float, default=None, help="with --drain: give up waiting after SECONDS")
    parser.set_defaults(func=run_pause)
    parser = subparsers.add_parser("resume", help="give back the sensors, schedules and run queue pause stopped")
    parser.set_defaults(func=run_resume)


def run_pause(args: argparse.Namespace) -> int:
    instance = stack_instance(load_settings())
    try:
        record = pause(instance, args.reason)
    except AlreadyPaused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    names = ", ".join(item.name for item in record.stopped) or "none were running"
    print(f"paused since {format_since(record)}: {record.reason!r}")
    print(f"stopped sensors and schedules: {names}")
    print(f"run queue: nothing launches; {queued_run_count(instance)} run(s) queued wait for `render-pipeline resume`")
    if not args.drain:
        return 0
    return _drain(instance, args.timeout)


def _drain(instance, timeout: float | None) -> int:
    """Wait until no run is in progress, printing what it waits for when that changes."""
    started, last_report, last_ids = time.monotonic(), 0.0, None
    while True:
        runs = runs_in_progress(instance)
        if not runs:
            print(f"drained: no run in progress ({time.monotonic() - started:.0f} s)")
            return 0
        elapsed = time.monotonic() - started
        ids = {run.run_id for run in runs}
        if ids != last_ids or elapsed - last_report >= DRAIN_REPORT_SECONDS:
            print(f"waiting for {len(runs)} run(s) in progress:")
            for run in runs:
                print(f"  {run.describe()}")
            last_ids, last_report = ids, elapsed
        if timeout is not None and elapsed >= timeout:
            print(f"error: {len(runs)} run(s) still in progress after {timeout:g} s; intake and dequeue stay paused",
                  file=sys.stderr)
            return 1
        time.sleep(DRAIN_POLL_SECONDS)


def run_resume(args: argparse.Namespace) -> int:
    instance = stack_instance(load_settings())
    try:
        record, restarted, missing = resume(instance)
    except NotPaused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"resumed after {time.time() - record.since:.0f} s paused ({record.reason!r})")
    print(f"restarted: {', '.join(restarted) or 'nothing (none were running when paused)'}")
    if missing:
        print(f"no longer in the code, not restarted: {', '.join(missing)}")
    print(f"run queue: launching again; {queued_run_count(instance)} run(s) queued")
    return 0
