"""`render-pipeline metrics --port 9464`: the Prometheus exporter (old pop-render metric names)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from render_pipeline.commands.doctor import CheckFailed, database_for
from render_pipeline.metrics import RenderPipelineCollector, serve
from render_pipeline.resources.factory import object_store_from_settings
from render_pipeline.settings import load_settings
from render_pipeline.stack import use_stack_instance


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("metrics", help="serve Prometheus metrics on /metrics")
    parser.add_argument("--port", type=int, default=9464, help="port to listen on (default 9464)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.set_defaults(func=run)


def _instance_factory():
    """The Dagster instance, loaded on first use (None without DAGSTER_HOME: the Dagster
    health check then reads 0 instead of the exporter refusing to start)."""
    cache: list = []

    def get():
        if not cache and os.environ.get("DAGSTER_HOME"):
            from dagster import DagsterInstance

            cache.append(DagsterInstance.get())
        return cache[0] if cache else None

    return get


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        print(f"error: --port must be between 1 and 65535 (got {args.port})", file=sys.stderr)
        return 2
    settings = load_settings()
    use_stack_instance(settings)
    try:
        database = database_for(settings, connect_timeout=3)
    except CheckFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    collector = RenderPipelineCollector(database, object_store_from_settings(settings.object_store),
                                        _instance_factory())
    server, thread = serve(collector, port=args.port, addr=args.host)
    print(f"serving metrics on http://{args.host}:{server.server_port}/metrics", flush=True)
    # Explicit handlers: a process started from a background shell inherits SIGINT (and may
    # inherit SIGTERM) ignored, and would otherwise never stop when asked to.
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        server.shutdown()
    return 0
