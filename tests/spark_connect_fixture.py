"""One warm Spark for the whole run: a stack started by `stack.up` (without Airflow), whose
supervisor runs the Spark Connect server the way `tripflow up` does. Started on first use
only; tests that never ask for it pay nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tripflow.config import Settings, SparkRunnerMode
from tripflow.services import spark_connect, stack
from tripflow.services.postgres import ManagedPostgres


@pytest.fixture(scope="session")
def connect_stack(
    test_home: Path, postgres_cluster: ManagedPostgres, template_url: str
) -> Iterator[Settings]:
    """Start the stack's supervised programs (the API and the Spark Connect server) on free
    ports under the run's home; return its settings."""
    from tests.conftest import TEMPLATE, free_port

    settings = Settings(
        _env_file=None,
        home=test_home / "connect-stack",
        # The API of this stack needs a database of its own: a template in use cannot be
        # cloned.
        database_url=postgres_cluster.create_database("connect_stack", template=TEMPLATE),
        api_port=free_port(),
        api_workers=1,
        api_threads=1,
        spark_runner=SparkRunnerMode.CONNECT,
        spark_connect_port=free_port(),
        spark_master="local[2]",
        spark_driver_memory="1g",
    )
    try:
        stack.up(settings, with_airflow=False)
        yield settings
    finally:
        stack.stop_supervisor(settings)


@pytest.fixture(scope="session")
def spark_connect_url(connect_stack: Settings) -> str:
    """The `sc://` URL of the run's Spark Connect server."""
    return spark_connect.url(connect_stack)
