"""Fixtures for the maintenance tests: a Dagster instance and the standard seeded scenario."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dagster import DagsterInstance, instance_for_test

from render_pipeline_tests.maintenance.scenario import Scenario, seed_standard


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as dagster_instance:
        yield dagster_instance


@pytest.fixture
def seeded(database, s3_store) -> Scenario:
    """The standard 1 000-render scenario in PostgreSQL and on the S3 server."""
    return seed_standard(database, s3_store)
