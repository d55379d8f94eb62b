"""Fixtures the integration tests share: a connection to the test's database, the run's
Spark session as the pipeline's runner, and the run's API holding the sample."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tripflow import pipeline
from tripflow.config import Settings
from tripflow.warehouse.database import connect


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the test's own database."""
    with connect(database_url) as connection:
        yield connection


@pytest.fixture
def runner(spark: Any) -> pipeline.SessionRunner:
    """The pipeline's Spark step, in the run's shared session."""
    return pipeline.SessionRunner(spark)


@pytest.fixture(scope="session")
def sample_api(connect_stack: Settings) -> str:
    """The URL of the run's API under gunicorn (the `connect_stack` fixture), its database
    holding the sample, loaded once for every module that asks."""
    from tests.integration.test_api import load_sample
    from tripflow.serving import maintenance
    from tripflow.serving.copy import ServingCopy

    load_sample(connect_stack.database_dsn)
    # Published without the stack's serving copy (as by another host): sync it, as the next
    # ingest would, so that what only the copy answers (similar-trip groups) answers.
    with psycopg.connect(connect_stack.database_dsn) as conn:
        maintenance.sync(conn, ServingCopy.from_settings(connect_stack))
    return f"http://{connect_stack.api_host}:{connect_stack.api_port}"
