"""Fixtures the integration tests share: a connection to the test's database, and the run's
Spark session as the pipeline's runner."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tripflow import pipeline
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
