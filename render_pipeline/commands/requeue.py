"""`render-pipeline requeue`: re-render failed renders chosen by id, error, style and time.

Marks the rows `queued` (reason and requeue count in metadata; `attempt` grows when a run
starts the render) in one transaction; the requeue sensor turns them into Dagster runs, which
the UI shows tagged `render_pipeline/requeue=true`.
"""

from __future__ import annotations

import argparse
import sys
import uuid

import psycopg

from render_pipeline.commands._arguments import parse_when, selection_problem
from render_pipeline.resources.database import PostgresResource
from render_pipeline.settings import load_settings
from render_pipeline.store import maintenance as store


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("requeue", help="re-render failed renders (by id, error, style, time window)")
    parser.add_argument("--id", dest="ids", action="append", type=_render_id, default=[], metavar="RENDER_ID",
                        help="a render id (repeatable)")
    parser.add_argument("--error-like", metavar="PATTERN",
                        help="error message matches this ILIKE pattern, e.g. '%%timeout%%'")
    parser.add_argument("--error-regex", metavar="REGEX", help="error message matches this PostgreSQL regex")
    parser.add_argument("--style", dest="styles", action="append", default=[], metavar="STYLE",
                        help="only this style (repeatable)")
    parser.add_argument("--since", type=parse_when, metavar="WHEN", help="failed at or after: ISO time or 30m / 6h / 2d ago")
    parser.add_argument("--until", type=parse_when, metavar="WHEN", help="failed before: ISO time or 30m / 6h / 2d ago")
    parser.add_argument("--all-failed", action="store_true", help="select every failed render (no other filter needed)")
    parser.add_argument("--include-archived", action="store_true",
                        help="also failures that retention flagged archived")
    parser.add_argument("--limit", type=int, default=1000, help="at most this many renders (default 1000)")
    parser.add_argument("--reason", default="operator requeue", help="recorded in the render's metadata")
    parser.add_argument("--dry-run", action="store_true", help="list what would be requeued; change nothing")
    parser.set_defaults(func=run)


def _render_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a render id (a UUID)") from None


def run(args: argparse.Namespace) -> int:
    selectors = (args.ids, args.error_like, args.error_regex, args.styles, args.since, args.until)
    if not args.all_failed and not any(selectors):
        print("error: choose renders with --id, --error-like, --error-regex, --style, --since/--until, "
              "or --all-failed", file=sys.stderr)
        return 2
    problem = selection_problem(limit=args.limit, most=100_000, styles=args.styles)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    settings = load_settings()
    database = PostgresResource.from_settings(settings.database, settings.home)
    try:
        with database.transaction() as conn:
            rows = store.select_failed(
                conn, render_ids=args.ids, error_ilike=args.error_like, error_regex=args.error_regex,
                style_ids=args.styles, failed_after=args.since, failed_before=args.until,
                include_archived=args.include_archived, limit=args.limit + 1,
            )
            more = len(rows) > args.limit
            rows = rows[: args.limit]
            queued = [] if args.dry_run else store.requeue(conn, [r["id"] for r in rows], reason=args.reason)
    except psycopg.errors.InvalidRegularExpression as exc:
        print(f"error: --error-regex: {exc.diag.message_primary}", file=sys.stderr)
        return 2
    finally:
        database.close()

    for row in rows:
        error = (row["error_message"] or "").splitlines()[0][:100] if row["error_message"] else ""
        print(f"{row['id']}  {row['style_id']:<12} {row['size_preset_id']:<12} attempt {row['attempt']}  "
              f"failed {row['failed_at']:%Y-%m-%d %H:%M}  {error}")
    if args.dry_run:
        print(f"dry run: {len(rows)} failed render(s) would be requeued")
    else:
        print(f"requeued {len(queued)} render(s); the requeue sensor launches their runs "
              f"(Dagster UI: runs tagged render_pipeline/requeue=true)")
    if more:
        print(f"more than {args.limit} renders match: run again (or raise --limit) for the rest")
    return 0
