"""Real servers for the tests: an embedded PostgreSQL (or RENDER_PIPELINE_TEST_DATABASE_URL)
and moto's S3 server on 127.0.0.1, used through boto3 exactly as MinIO would be."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg
import pytest
from dagster import DagsterInstance, instance_for_test
from psycopg import sql
from psycopg.conninfo import make_conninfo

from render_pipeline.resources.database import PostgresResource
from render_pipeline.resources.object_store import LocalObjectStore, S3Client, S3ObjectStore
from render_pipeline.store import migrations
from render_pipeline_tests.maintenance.scenario import Scenario, seed_standard

S3_ACCESS_KEY = "test-access-key"
S3_SECRET_KEY = "test-secret-key"


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server for the session; tests get their own databases on it."""
    external = os.environ.get("RENDER_PIPELINE_TEST_DATABASE_URL")
    if external:
        yield external
        return
    from render_pipeline.resources.embedded_postgres import embedded_server, stop_embedded_server

    home = tmp_path_factory.mktemp("pg")
    server = embedded_server(home)
    yield server.get_uri()
    stop_embedded_server(home)


@pytest.fixture
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty database, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield make_conninfo(pg_admin_url, dbname=name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def database(database_url: str) -> Iterator[PostgresResource]:
    """The app database with every migration applied and the catalogues seeded."""
    resource = PostgresResource(url=database_url)
    with resource.connection() as conn:
        migrations.upgrade(conn)
        migrations.seed(conn)
    yield resource
    resource.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def boto_client(endpoint: str, **kwargs):
    """A plain boto3 client straight to the S3 server (no proxy): the tests' own hands."""
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=kwargs.pop("access_key", S3_ACCESS_KEY),
        aws_secret_access_key=kwargs.pop("secret_key", S3_SECRET_KEY), region_name="us-east-1", **kwargs,
    )


@pytest.fixture
def boto(s3_endpoint: str):
    return boto_client(s3_endpoint)


@pytest.fixture
def s3_bucket(boto) -> str:
    """A new, empty bucket on the S3 server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    boto.create_bucket(Bucket=name)
    return name


def s3_settings(endpoint: str, bucket: str) -> dict[str, str]:
    """The settings that point the project at ``bucket`` on the S3 server."""
    return {"MINIO_ENDPOINT": endpoint, "MINIO_ACCESS_KEY": S3_ACCESS_KEY, "MINIO_SECRET_KEY": S3_SECRET_KEY,
            "MINIO_BUCKET": bucket}


def make_s3_store(endpoint: str, bucket: str, **client_options) -> S3ObjectStore:
    return S3ObjectStore(
        s3=S3Client(
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
            **client_options,
        ),
        bucket=bucket,
    )


@pytest.fixture
def s3_store(s3_endpoint: str, s3_bucket: str) -> S3ObjectStore:
    return make_s3_store(s3_endpoint, s3_bucket)


@pytest.fixture
def local_store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(root=str(tmp_path / "objects"))


@pytest.fixture(params=["local", "s3"])
def object_store(request: pytest.FixtureRequest):
    """Each object-store contract test runs against both implementations."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def seeded(database, s3_store) -> Scenario:
    """The standard 1 000-render scenario in PostgreSQL and on the S3 server."""
    return seed_standard(database, s3_store)


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    """A throwaway Dagster instance (sqlite) for in-process runs."""
    with instance_for_test() as dagster_instance:
        yield dagster_instance


@pytest.fixture
def s3_env(database, database_url, s3_endpoint, s3_bucket, monkeypatch) -> dict[str, str]:
    """The project pointed at the S3 server and the test database."""
    env = {"DATABASE_URL": database_url, **s3_settings(s3_endpoint, s3_bucket)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the resources read secrets through EnvVar
    return env


# The drills on a live stack take minutes each: started first, they run beside the rest on the
# other workers instead of trailing at the end of the suite.
LONG_FIRST = ("operations/test_drills_live.py", "commands/test_up_supervision.py", "reliability/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.path.as_posix()
        return next((n for n, part in enumerate(LONG_FIRST) if part in path), len(LONG_FIRST))

    items.sort(key=rank)
