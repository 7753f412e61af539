"""`render-pipeline …`: the operators' commands.

Each subcommand lives in `render_pipeline.commands.<name>` and registers itself; this module
only dispatches and turns expected failures into one readable line and an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import render_pipeline.commands
from render_pipeline.resources.database import DatabaseUnavailable
from render_pipeline.resources.object_store import ObjectStoreError
from render_pipeline.settings import ConfigError
from render_pipeline.stack import NoInstance
from render_pipeline.store.migrations import MigrationError

EXIT_FAILURE = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="render-pipeline", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(render_pipeline.commands.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):  # helpers the commands share
            continue
        module = importlib.import_module(f"render_pipeline.commands.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ObjectStoreError as exc:
        print(f"error: {exc.with_key()}", file=sys.stderr)
        return EXIT_FAILURE
    except (DatabaseUnavailable, MigrationError, NoInstance) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
