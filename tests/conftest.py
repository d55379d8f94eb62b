"""Shared fixtures: one PostgreSQL cluster and one Spark session for the whole run.

Every test that needs a database gets a fresh one cloned from a migrated template, so tests
are isolated and no test pays for migrations.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest

from tripflow.config import Settings
from tripflow.services.postgres import ManagedPostgres
from tripflow.warehouse.database import migrate

pytest_plugins = ["tests.hdfs_fixture", "tests.s3_fixture", "tests.spark_connect_fixture"]

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "trips.csv"
TEMPLATE = "tripflow_template"
_database_numbers = count(1)


def free_port() -> int:
    """Return a TCP port free on loopback right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def test_home() -> Iterator[Path]:
    """Give the run its own TRIPFLOW_HOME, reachable by the `postgres` user."""
    home = Path(tempfile.mkdtemp(prefix="tripflow-test-"))
    home.chmod(0o755)
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster(test_home: Path) -> Iterator[ManagedPostgres]:
    """Start a private PostgreSQL + PostGIS cluster with the project's own code."""
    settings = Settings(_env_file=None, home=test_home, database_port=free_port())
    cluster = ManagedPostgres(settings)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def template_url(postgres_cluster: ManagedPostgres) -> str:
    """Create and migrate the template every test database is cloned from."""
    url = postgres_cluster.create_database(TEMPLATE)
    migrate(url)
    return url


@pytest.fixture
def database_url(postgres_cluster: ManagedPostgres, template_url: str) -> str:
    """Give a test a fresh, migrated database of its own."""
    name = f"test_{os.getpid()}_{next(_database_numbers)}"
    return postgres_cluster.create_database(name, template=TEMPLATE)


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """Share one local Spark session across the run (with Hadoop's S3A on its classpath, for
    the tests on an s3:// lake)."""
    from tripflow.spark.session import build_session, s3a_jars

    jars = s3a_jars(Settings(_env_file=None).s3a_jars)
    session = build_session("local[2]", extra_conf={"spark.jars": ",".join(jars)})
    yield session
    session.stop()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings pointing at a temporary lake and the test's own database."""
    return Settings(
        _env_file=None,
        home=tmp_path / "home",
        lake_url=(tmp_path / "lake").as_uri(),
        database_url=database_url,
        spark_master="local[2]",
        # Nothing listens there: a stack left running on the default port is never used.
        spark_connect_port=free_port(),
    )
