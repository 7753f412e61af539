"""`render-pipeline backup DEST`: both databases, a bucket inventory and a manifest into DEST."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg

from render_pipeline.operations.backup import BackupError, backup
from render_pipeline.operations.postgres_tools import ToolFailed
from render_pipeline.settings import first_line, load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("backup", help="back up both databases and the bucket's inventory into a new directory")
    parser.add_argument("destination", type=Path, metavar="DEST", help="a directory that does not exist yet")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        result = backup(settings, args.destination)
    except (BackupError, ToolFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"error: PostgreSQL: {first_line(exc)}", file=sys.stderr)
        return 1
    manifest = result.manifest
    for name, facts in manifest["files"].items():
        print(f"  {name:<20} {facts['bytes']:>12} bytes  sha256 {facts['sha256'][:16]}…")
    print(f"backup written to {result.path} in {result.seconds:.1f} s "
          f"(schema {manifest['schema_version']:03d}; restore with `render-pipeline restore {result.path}`)")
    return 0
