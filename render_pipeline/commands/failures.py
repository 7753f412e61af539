"""`render-pipeline failures`: failed renders counted per error message, most frequent first.

The old runbook's `GROUP BY error_message`: read it to choose `requeue --error-like`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta

from render_pipeline.commands._arguments import parse_when, selection_problem
from render_pipeline.resources.database import PostgresResource
from render_pipeline.settings import load_settings
from render_pipeline.store import maintenance as store


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("failures", help="failed renders per error message (most frequent first)")
    parser.add_argument("--since", type=parse_when, metavar="WHEN",
                        help="failed at or after: ISO time or 30m / 6h / 2d ago (default 24h)")
    parser.add_argument("--style", dest="styles", action="append", default=[], metavar="STYLE",
                        help="only this style (repeatable)")
    parser.add_argument("--include-archived", action="store_true",
                        help="also failures that retention flagged archived")
    parser.add_argument("--limit", type=int, default=20, help="at most this many messages (default 20)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    problem = selection_problem(limit=args.limit, most=1000, styles=args.styles)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    since = args.since or datetime.now(UTC) - timedelta(hours=24)
    settings = load_settings()
    database = PostgresResource.from_settings(settings.database, settings.home)
    try:
        with database.connection() as conn:
            rows = store.failure_summary(conn, failed_after=since, style_ids=args.styles,
                                         include_archived=args.include_archived, limit=args.limit)
    finally:
        database.close()
    if not rows:
        print(f"no failed renders since {since:%Y-%m-%d %H:%M} UTC")
        return 0
    for row in rows:
        message = (row["error_message"] or "").splitlines()[0][:120]
        print(f"{row['renders']:>8}  {row['first_failed']:%Y-%m-%d %H:%M} – {row['last_failed']:%Y-%m-%d %H:%M}  "
              f"{message}")
    return 0
