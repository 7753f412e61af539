"""Fixtures for the fault-injection suite: the fault proxy in front of the S3 server, the
environment pointing the project at it, a Dagster instance, and the soak switch.

`RENDER_PIPELINE_SOAK=1` (or `--soak` when this folder is passed to pytest explicitly) scales
the burst and the repetition counts up for runs outside CI.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from dagster import instance_for_test
from psycopg import sql

from render_pipeline.resources.embedded_postgres import dagster_storage_url
from render_pipeline_tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY
from render_pipeline_tests.reliability.fault_proxy import FaultProxy
from render_pipeline_tests.reliability.harness import project_storage

# Short client timeouts so a stalled request fails in seconds, not the production 30 s.
CLIENT_TIMEOUTS = {"MINIO_CONNECT_TIMEOUT": "2", "MINIO_READ_TIMEOUT": "2", "MINIO_MAX_ATTEMPTS": "3"}


def pytest_addoption(parser: pytest.Parser) -> None:
    try:
        parser.addoption("--soak", action="store_true", default=False,
                         help="reliability suite: larger burst and more repetitions")
    except ValueError:  # already registered
        pass


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "render_pipeline_tests/reliability/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(scope="session")
def soak(request: pytest.FixtureRequest) -> bool:
    return os.environ.get("RENDER_PIPELINE_SOAK", "") not in ("", "0") or bool(request.config.getoption("--soak", False))


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(s3_endpoint) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def s3_env(database, database_url, proxy, s3_bucket, monkeypatch) -> dict[str, str]:
    """The project pointed at the S3 server *through the fault proxy*, with one style."""
    env = {
        "DATABASE_URL": database_url,
        "MINIO_ENDPOINT": proxy.url,
        "MINIO_ACCESS_KEY": S3_ACCESS_KEY,
        "MINIO_SECRET_KEY": S3_SECRET_KEY,
        "MINIO_BUCKET": s3_bucket,
        "RENDER_DEFAULT_STYLES": "duotone",
        **CLIENT_TIMEOUTS,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the resources read secrets through EnvVar
    return env


@pytest.fixture
def pg_dagster_home(pg_admin_url, tmp_path) -> Iterator[tuple[str, str]]:
    """(DAGSTER_HOME, storage URL) of a PostgreSQL-backed instance, as in production."""
    name = f"dagster_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    home = tmp_path / "dagster_home"
    home.mkdir()
    yield str(home), dagster_storage_url(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pg_instance(pg_dagster_home):
    """A DagsterInstance with run, event-log and schedule storage in PostgreSQL."""
    home, url = pg_dagster_home
    with instance_for_test(overrides=project_storage(url), temp_dir=home) as inst:
        yield inst
