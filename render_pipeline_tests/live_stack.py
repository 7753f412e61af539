"""The real stack in a subprocess, for drills: `render-pipeline up` on a fresh home.

    with LiveStack(tmp_path / "home", env={"RENDER_DEFAULT_PRESETS": "square-1024"}) as stack:
        stack.put_upload("uploads/a/1.jpg", jpeg)
        stack.wait_until(lambda: stack.scalar("SELECT count(*) FROM renders WHERE status = 'completed'") >= 4,
                         120, "4 completed renders")
        stack.stop()                       # SIGTERM to the whole process group, SIGKILL after a timeout
        stack.cli("backup", "/tmp/b")      # any `render-pipeline` command with the stack's environment
        stack.start()                      # again, on the same home

`up` runs in its own process group (its children in theirs) with a fresh `RENDER_PIPELINE_HOME` (embedded
PostgreSQL, local object store unless ``env`` names MINIO_ENDPOINT & co, e.g. a moto server).
`start` returns once the sensor, scheduler and run-queue daemons heartbeat and `uploads_sensor`
has ticked since the start; leaving the context stops the stack and the embedded PostgreSQL,
leaving no process behind (whatever `up` left is SIGKILLed: see ``processes()``).
Timeouts raise AssertionError with the tail of the stack's log.

API: ``start()`` / ``stop()`` / ``running`` / ``processes()``; ``put_upload(key, data)`` and ``store`` (the
stack's ObjectStore); ``cli(*args)``; ``wait_until(predicate, timeout, what)``;
``query(sql, params)`` / ``scalar(sql, params)`` on the app database, ``app_url()``;
``dagster_instance()`` (a context manager) and ``dagster_database()``; ``log_tail()``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from dagster import DagsterInstance, instance_for_test
from psycopg.rows import dict_row

from render_pipeline.operations.postgres_tools import Database
from render_pipeline.stack import heartbeat_ages
from render_pipeline.resources.embedded_postgres import (
    dagster_storage_url,
    embedded_server_running,
    running_server_uri,
    stop_embedded_server,
)
from render_pipeline.resources.factory import object_store_from_settings
from render_pipeline.resources.object_store import ObjectInfo, ObjectStore
from render_pipeline.settings import DEFAULT_DAGSTER_DB_NAME, DEFAULT_DB_NAME, load_settings
from render_pipeline_tests.processes import clean_environ, free_port

T = TypeVar("T")
REQUIRED_DAEMONS = {"SENSOR", "SCHEDULER", "QUEUED_RUN_COORDINATOR"}


class LiveStack:
    def __init__(self, home: Path, env: Mapping[str, str] | None = None, *, start_timeout: float = 180,
                 up_args: Sequence[str] = ()) -> None:
        self.home = Path(home)
        self.up_args = list(up_args)
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = {**clean_environ(), "RENDER_PIPELINE_HOME": str(self.home), **(env or {})}
        self.log_path = self.home / "stack.log"
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.store: ObjectStore = object_store_from_settings(load_settings(self.env).object_store)

    def __enter__(self) -> LiveStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """`render-pipeline up --port <free port>`; returns when the daemon and sensor are live."""
        assert self.process is None, "the stack is already running"
        started = time.time()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "render_pipeline.cli", "up", "--port", str(free_port()), *self.up_args],
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.wait_until(lambda: self._ready(started), self.start_timeout, "the daemon to heartbeat and "
                        "uploads_sensor to tick")

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM to the stack's process group, SIGKILL if it is still there after ``timeout``;
        then stop the embedded PostgreSQL if `up` did not."""
        if self.process is not None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait()
            self.process = None
        for pid in self.processes():  # anything `up` failed to stop
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if embedded_server_running(self.home):
            stop_embedded_server(self.home)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def processes(self) -> list[int]:
        """Every live process started for this stack (`up`, its children and theirs, the
        embedded PostgreSQL): found by the stack's RENDER_PIPELINE_HOME in its environment."""
        mark = f"\0RENDER_PIPELINE_HOME={self.home}\0".encode()
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and mark in b"\0" + (entry / "environ").read_bytes() and \
                        (entry / "stat").read_text().rpartition(")")[2].split()[0] != "Z":
                    found.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile, or not ours to read
        return found

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def _server_running(self) -> bool:
        return embedded_server_running(self.home)

    def _ready(self, since: float) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"`render-pipeline up` exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            if not self._server_running():
                return False
            ages = heartbeat_ages(self.dagster_database())
        except (AssertionError, psycopg.OperationalError):  # the server is still starting up
            return False
        if not REQUIRED_DAEMONS <= {name for name, age in ages.items() if age < time.time() - since}:
            return False
        with self.dagster_instance() as instance:
            return any(tick.timestamp > since for state in instance.all_instigator_state()
                       if state.instigator_name == "uploads_sensor"
                       for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1))

    # ---- what a drill does to it ----------------------------------------------------------

    def put_upload(self, key: str, data: bytes) -> ObjectInfo:
        return self.store.put(key, data, content_type="image/jpeg")

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """A `render-pipeline` command with the stack's environment (output captured)."""
        return subprocess.run([sys.executable, "-m", "render_pipeline.cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def wait_until(self, predicate: Callable[[], T], timeout: float, what: str, poll: float = 0.5) -> T:
        """``predicate()``'s first truthy value; AssertionError with the log tail after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not (result := predicate()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{self.log_tail()}")
            time.sleep(poll)
        return result

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no stack log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # ---- the databases ---------------------------------------------------------------------

    def server_uri(self, database: str | None = None) -> str:
        """The embedded server's URI (the harness never starts the server itself)."""
        uri = running_server_uri(self.home, database)
        assert uri is not None, f"the embedded PostgreSQL under {self.home} is not running"
        return uri

    def app_url(self) -> str:
        return self.server_uri(DEFAULT_DB_NAME)

    def dagster_database(self) -> Database:
        return Database.from_conninfo(self.server_uri(DEFAULT_DAGSTER_DB_NAME))

    def query(self, statement: str, params: Any = ()) -> list[dict]:
        with psycopg.connect(self.app_url(), autocommit=True, row_factory=dict_row) as conn:
            return conn.execute(statement, params).fetchall()

    def scalar(self, statement: str, params: Any = ()) -> Any:
        rows = self.query(statement, params)
        return next(iter(rows[0].values())) if rows else None

    @contextmanager
    def dagster_instance(self) -> Iterator[DagsterInstance]:
        """A DagsterInstance on the stack's storage, opened for this block only (it survives a
        restore of the database underneath)."""
        url = dagster_storage_url(self.server_uri(), DEFAULT_DAGSTER_DB_NAME)
        (self.home / "test_instance").mkdir(exist_ok=True)
        with instance_for_test(overrides=plain_storage(url), temp_dir=str(self.home / "test_instance"),
                               set_dagster_home=False) as instance:
            yield instance


def plain_storage(url: str) -> dict:
    """dagster-postgres without a pool: no session outlives the block (restore refuses to
    replace a database that has sessions)."""
    return {"storage": {"postgres": {"postgres_url": url}}}
