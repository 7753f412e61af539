"""Backup and restore of the whole stack: both databases, a bucket inventory and a manifest.

A backup is a directory: `app.dump` and `dagster.dump` (pg_dump custom format, each one
snapshot whose row counts the manifest records), `inventory.jsonl.gz` (key, size, ETag of every
object, listed from the same moment), `manifest.json` (times, versions, counts, size and
sha256 of each file) and `SHA256SUMS`.  It is written under a hidden name and renamed into
place when complete, so a directory named DEST is always a whole backup.

The objects themselves are not copied: the bucket is the durable store (versioned or
replicated by its own means).  Restore puts both databases back and reconciles them with the
bucket as it is now; see `restore`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import psycopg

from render_pipeline.operations import postgres_tools as pg
from render_pipeline.operations.postgres_tools import Database
from render_pipeline.stack import StackDatabases, stack_databases
from render_pipeline.resources.factory import object_store_from_settings
from render_pipeline.resources.object_store import ObjectStore
from render_pipeline.settings import Settings
from render_pipeline.store import migrations

FORMAT = "render-pipeline-backup/1"
MANIFEST = "manifest.json"
CHECKSUMS = "SHA256SUMS"
APP_DUMP = "app.dump"
DAGSTER_DUMP = "dagster.dump"
INVENTORY = "inventory.jsonl.gz"
PROJECT_ROOT = Path(__file__).resolve().parents[2]

Say = Callable[[str], None]


class BackupError(RuntimeError):
    """Bad input or a failed check: one readable line, and nothing was changed."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: dict
    seconds: float


def backup(settings: Settings, destination: Path, say: Say = print) -> BackupResult:
    """Write a new backup directory at ``destination``; refuses a path that exists."""
    destination = destination.expanduser().absolute()
    if destination.exists() or destination.is_symlink():
        raise BackupError(f"{destination} already exists: a backup is written into a new directory")
    if not destination.parent.is_dir():
        raise BackupError(f"{destination.parent} does not exist: create it, or choose another destination")
    store = object_store_from_settings(settings.object_store)
    started = time.monotonic()
    work = destination.parent / f".{destination.name}.incomplete-{os.getpid()}"
    work.mkdir(mode=0o700)
    try:
        try:
            with stack_databases(settings, create_embedded=False) as databases:
                manifest = _write_backup(databases, store, work, say)
        except FileNotFoundError as exc:
            raise BackupError(str(exc)) from None
        manifest["seconds"] = round(time.monotonic() - started, 3)
        _write_manifest(work, manifest)
        work.rename(destination)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return BackupResult(destination, manifest, manifest["seconds"])


def _write_backup(databases: StackDatabases, store: ObjectStore, work: Path, say: Say) -> dict:
    """Both dumps and the listing start together: two exported snapshots, then three workers."""
    started_at = _now()
    with _snapshot(databases.app) as (app_conn, app_snapshot), \
            _snapshot(databases.dagster) as (dagster_conn, dagster_snapshot):
        app, schema_version = app_counts(app_conn), migrations.current_version(app_conn)
        dagster = dagster_counts(dagster_conn)
        server_version = app_conn.info.parameter_status("server_version")
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="backup") as pool:
            dumps = [pool.submit(pg.dump, databases.app, work / APP_DUMP, snapshot=app_snapshot),
                     pool.submit(pg.dump, databases.dagster, work / DAGSTER_DUMP, snapshot=dagster_snapshot)]
            listing = pool.submit(_write_inventory, store, work / INVENTORY)
            for future in dumps:
                future.result()
            inventory = listing.result()
    say(f"dumped {databases.app.describe()} ({app['renders']} renders) and {databases.dagster.describe()} "
        f"({dagster['runs']} runs); listed {inventory['objects']} objects in {store.describe()}")
    return {
        "format": FORMAT,
        "started_at": started_at,
        "finished_at": _now(),
        "code_version": _code_version(),
        "schema_version": schema_version,
        "postgres": {"server": server_version, "client": pg.client_version()},
        "app_database": {"where": databases.app.describe(), "embedded": databases.embedded, "counts": app},
        "dagster_database": {"where": databases.dagster.describe(), "counts": dagster},
        "object_store": {"where": store.describe(), **inventory},
        "files": {name: _file_facts(work / name) for name in (APP_DUMP, DAGSTER_DUMP, INVENTORY)},
    }


@contextmanager
def _snapshot(database: Database) -> Iterator[tuple[psycopg.Connection, str]]:
    """A read-only repeatable-read transaction whose snapshot pg_dump shares (``--snapshot``),
    so the counts recorded in the manifest are exactly what the dump holds."""
    with database.connect(autocommit=True) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield conn, str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])
        finally:
            conn.execute("ROLLBACK")


def app_counts(conn: psycopg.Connection) -> dict:
    assets = dict(conn.execute("SELECT status, count(*) FROM assets GROUP BY status").fetchall())
    renders = dict(conn.execute("SELECT status, count(*) FROM renders GROUP BY status").fetchall())
    return {"assets": sum(assets.values()), "renders": sum(renders.values()),
            "assets_by_status": dict(sorted(assets.items())), "renders_by_status": dict(sorted(renders.items()))}


def dagster_counts(conn: psycopg.Connection) -> dict:
    if conn.execute("SELECT to_regclass('runs')").fetchone()[0] is None:
        return {"runs": 0, "runs_by_status": {}}  # no daemon or run has written here yet
    runs = dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
    return {"runs": sum(runs.values()), "runs_by_status": dict(sorted(runs.items()))}


def _write_inventory(store: ObjectStore, path: Path) -> dict:
    """Every object as one JSON line; returns the counts for the manifest."""
    listed_at = _now()
    by_prefix: Counter = Counter()
    total_bytes = 0
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for obj in store.iter_objects(""):
            out.write(json.dumps({"key": obj.key, "size": obj.size, "etag": obj.etag,
                                  "last_modified": obj.last_modified.isoformat()}) + "\n")
            by_prefix[obj.key.split("/", 1)[0] + "/"] += 1
            total_bytes += obj.size
    return {"listed_at": listed_at, "objects": sum(by_prefix.values()), "bytes": total_bytes,
            "by_prefix": dict(sorted(by_prefix.items()))}


def read_inventory(source: Path) -> dict[str, dict]:
    with gzip.open(source / INVENTORY, "rt", encoding="utf-8") as lines:
        return {entry["key"]: entry for entry in map(json.loads, lines)}


def _write_manifest(work: Path, manifest: dict) -> None:
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    names = [MANIFEST, *manifest["files"]]
    # `sha256sum -c SHA256SUMS` checks a backup by hand; restore checks the manifest line.
    (work / CHECKSUMS).write_text("".join(f"{_sha256(work / name)}  {name}\n" for name in names))


def verify_backup(source: Path) -> dict:
    """The manifest of a complete, intact backup; BackupError naming the first problem."""
    source = source.expanduser().absolute()
    if not source.is_dir():
        raise BackupError(f"backup directory {source} does not exist")
    if not (source / MANIFEST).is_file() or not (source / CHECKSUMS).is_file():
        raise BackupError(f"{source} has no {MANIFEST} / {CHECKSUMS}: not a render-pipeline backup, "
                          f"or one that never finished")
    if _listed_checksums(source / CHECKSUMS).get(MANIFEST) != _sha256(source / MANIFEST):
        raise BackupError(f"{source / MANIFEST} does not match its checksum in {CHECKSUMS}: the manifest was changed")
    try:
        manifest = json.loads((source / MANIFEST).read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError):
        raise BackupError(f"{source / MANIFEST} cannot be read as a backup manifest") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{source} is a {manifest.get('format')!r} backup; this version reads {FORMAT}")
    for name in (APP_DUMP, DAGSTER_DUMP, INVENTORY):
        _check_file(source, name, files.get(name))
    for name in (APP_DUMP, DAGSTER_DUMP):
        try:
            pg.check_dump(source / name)
        except pg.ToolFailed as exc:
            raise BackupError(f"{source / name} is not a readable dump ({exc})") from None
    latest = migrations.latest_version()
    if int(manifest.get("schema_version", 0)) > latest:
        raise BackupError(f"the backup's schema is at version {manifest['schema_version']:03d}, newer than this "
                          f"code ({latest:03d}): restore with the code version it was taken with "
                          f"({manifest.get('code_version', {}).get('git') or 'see manifest.json'})")
    return manifest


def _listed_checksums(path: Path) -> dict[str, str]:
    """``sha256sum`` lines (`<digest>  <name>`) as name → digest; malformed lines are skipped."""
    listed = {}
    for line in path.read_text(errors="replace").splitlines():
        digest, sep, name = line.partition("  ")
        if sep:
            listed[name] = digest
    return listed


def _check_file(source: Path, name: str, expected: dict | None) -> None:
    path = source / name
    if expected is None:
        raise BackupError(f"{source / MANIFEST} does not list {name}: the manifest was changed")
    if not path.is_file():
        raise BackupError(f"{path} is missing: the backup is incomplete")
    size = path.stat().st_size
    if size != expected.get("bytes"):
        raise BackupError(f"{path} is {size} bytes, the manifest says {expected.get('bytes')}: "
                          f"the backup is truncated or damaged")
    if _sha256(path) != expected.get("sha256"):
        raise BackupError(f"{path} does not match the sha256 in the manifest: the file or the manifest was changed")


def _file_facts(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _code_version() -> dict:
    try:
        commit = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None  # an installed package, not a checkout
    return {"package": metadata.version("render_pipeline"), "git": commit}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
