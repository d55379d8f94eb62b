"""Each end-to-end test gets its own home, ports and stack, torn down afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.command import TRIPFLOW


def stack_environment() -> dict[str, str]:
    """Return the environment of a stack in a new home on free ports (nothing started)."""
    home = Path(tempfile.mkdtemp(prefix="tripflow-e2e-"))
    home.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIPFLOW_")}
    return env | {
        "TRIPFLOW_HOME": str(home),
        "TRIPFLOW_DATABASE_PORT": str(free_port()),
        "TRIPFLOW_API_PORT": str(free_port()),
        "TRIPFLOW_AIRFLOW_PORT": str(free_port()),
        "TRIPFLOW_AIRFLOW_LOG_SERVER_PORT": str(free_port()),
        "TRIPFLOW_AIRFLOW_TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "TRIPFLOW_SPARK_CONNECT_PORT": str(free_port()),
        "TRIPFLOW_SENSOR_POLL_SECONDS": "2",
        "TRIPFLOW_SPARK_MASTER": "local[2]",
        "TRIPFLOW_SPARK_DRIVER_MEMORY": "1g",
    }


def remove_stack(env: dict[str, str]) -> None:
    """Stop whatever the stack of `env` runs and delete its home."""
    home = env["TRIPFLOW_HOME"]
    subprocess.run([TRIPFLOW, "down"], env=env, cwd=home, capture_output=True, check=False)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def environment() -> Iterator[dict[str, str]]:
    env = stack_environment()
    yield env
    remove_stack(env)
