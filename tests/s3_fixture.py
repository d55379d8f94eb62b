"""A pytest plugin: one real S3 server (versitygw, started by the project) for the whole run.

Register it with `pytest_plugins = ["tests.s3_fixture"]` in tests/conftest.py. The binary comes
from scripts/fetch-versitygw.sh (TRIPFLOW_S3_SERVER_BIN or the default cache path)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tripflow.config import Settings
from tripflow.lake import Lake, lake_options
from tripflow.services.s3 import ManagedS3

BUCKET = "tripflow-tests"


@pytest.fixture(scope="session")
def s3(test_home: Path) -> Iterator[ManagedS3]:
    """Start the S3 server under the run's home on a free port, with the tests' bucket; stop
    it when the run ends."""
    settings = Settings(
        _env_file=None,
        home=test_home,
        lake_url=f"s3://{BUCKET}",
        s3_endpoint=f"http://127.0.0.1:{free_port()}",
    )
    server = ManagedS3(settings)
    server.start()
    yield server
    server.stop()


def s3_lake(server: ManagedS3) -> Lake:
    """Return a lake of its own (a fresh prefix of the tests' bucket) on the S3 server."""
    return Lake(f"s3://{BUCKET}/tests/{uuid.uuid4().hex}", **lake_options(server.settings))
