"""Part (c) of the scale benchmark: Dagster's dynamic partitions on PostgreSQL storage.

The instance is the production one (`PooledPostgresStorage`, as dagster.yaml names it) on a
fresh database of the embedded server.  Partitions are added in batches of FILL_BATCH to reach
each checkpoint; at every checkpoint the calls the project makes are timed: a sensor tick's
`add_dynamic_partitions` (MAX_UPLOADS_PER_TICK new keys), `has_dynamic_partition`,
`get_dynamic_partitions` (the reaper resolves ranged runs with it) and the GraphQL query the
asset page's partition bar makes, through dagster_graphql in this process against a code
location holding the production `uploads` partitions definition.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import yaml
from dagster import AssetKey, DagsterInstance, Definitions, asset
from dagster._core.test_utils import in_process_test_workspace
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster_graphql.test.utils import execute_dagster_graphql
from psycopg import sql

from render_pipeline.render.partitions import uploads_partitions
from render_pipeline.render.sensors import MAX_UPLOADS_PER_TICK
from render_pipeline.resources.embedded_postgres import dagster_storage_url, ensure_database

ROOT = Path(__file__).resolve().parents[1]
DAGSTER_DATABASE = "scale_dagster"
FILL_BATCH = 10_000
CHECKPOINTS = (10_000, 100_000, 1_000_000)
PARTITIONS_QUERY = """
query UploadPartitions($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      partitionKeysByDimension { name partitionKeys }
      partitionStats { numPartitions numMaterialized numFailed }
    }
  }
}
"""


@asset(partitions_def=uploads_partitions)
def uploads() -> None:
    """Stands in for the production `uploads` asset: the same partitions definition."""


DEFS = Definitions(assets=[uploads])


def partition_key(n: int) -> str:
    """A key shaped like an upload's: `{asset_id}/{filename}`."""
    return f"{uuid.uuid5(uuid.NAMESPACE_URL, str(n))}/photo-{n}.jpg"


def _instance(admin_uri: str, directory: Path) -> DagsterInstance:
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DAGSTER_DATABASE)))
    ensure_database(admin_uri, DAGSTER_DATABASE)
    config = {"storage": {"custom": {"module": "render_pipeline.dagster_storage", "class": "PooledPostgresStorage",
                                     "config": {"postgres_url": dagster_storage_url(admin_uri, DAGSTER_DATABASE)}}},
              "telemetry": {"enabled": False}}
    (directory / "dagster.yaml").write_text(yaml.safe_dump(config))
    return DagsterInstance.from_config(str(directory))


def _timed(call: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _line(name: str, samples: list[float]) -> None:
    print(f"  {name:<52} {statistics.median(samples):10.1f} {min(samples):10.1f} {max(samples):10.1f}")


def _graphql(context) -> int:
    result = execute_dagster_graphql(context, PARTITIONS_QUERY, {"assetKey": AssetKey("uploads").to_graphql_input()})
    assert not result.errors, result.errors
    [dimension] = result.data["assetNodeOrError"]["partitionKeysByDimension"]
    return len(dimension["partitionKeys"])


def bench_partitions(admin_uri: str, total: int, runs: int) -> None:
    print(f"\n(c) Dagster dynamic partitions on PostgreSQL (ms; median, min, max of {runs})")
    checkpoints = sorted({c for c in CHECKPOINTS if c < total} | {total})
    origin = LoadableTargetOrigin(module_name="benchmarks.scale_partitions", attribute="DEFS",
                                  working_directory=str(ROOT))
    with tempfile.TemporaryDirectory() as directory:
        instance = _instance(admin_uri, Path(directory))
        added, fill_seconds = 0, 0.0
        for checkpoint in checkpoints:
            started = time.perf_counter()
            while added < checkpoint - MAX_UPLOADS_PER_TICK * runs:
                batch = min(FILL_BATCH, checkpoint - MAX_UPLOADS_PER_TICK * runs - added)
                instance.add_dynamic_partitions(uploads_partitions.name, [partition_key(added + i) for i in range(batch)])
                added += batch
            fill_seconds += time.perf_counter() - started
            print(f" at {checkpoint:,} partitions (filled in batches of {FILL_BATCH:,}: {fill_seconds:.0f} s so far, "
                  f"{added / max(fill_seconds, 1e-9):,.0f} keys/s)")

            def sensor_tick_add() -> None:
                nonlocal added
                keys = [partition_key(added + i) for i in range(MAX_UPLOADS_PER_TICK)]
                instance.add_dynamic_partitions(uploads_partitions.name, keys)
                added += MAX_UPLOADS_PER_TICK

            _line(f"add_dynamic_partitions ({MAX_UPLOADS_PER_TICK} new keys, a sensor tick)",
                  _timed(sensor_tick_add, runs))
            probe = iter(range(0, added, max(added // (runs + 1), 1)))
            _line("has_dynamic_partition", _timed(
                lambda: instance.has_dynamic_partition(uploads_partitions.name, partition_key(next(probe))), runs))
            _line("get_dynamic_partitions (every key)", _timed(
                lambda: instance.get_dynamic_partitions(uploads_partitions.name), runs))
            with in_process_test_workspace(instance, origin) as context:
                assert _graphql(context) == added
                _line("GraphQL asset partitions (keys + stats)", _timed(lambda: _graphql(context), runs))
        instance.dispose()
