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


@pytest.fixture
def environment() -> Iterator[dict[str, str]]:
    home = Path(tempfile.mkdtemp(prefix="tripflow-e2e-"))
    home.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIPFLOW_")}
    env |= {
        "TRIPFLOW_HOME": str(home),
        "TRIPFLOW_DATABASE_PORT": str(free_port()),
        "TRIPFLOW_API_PORT": str(free_port()),
        "TRIPFLOW_AIRFLOW_PORT": str(free_port()),
        "TRIPFLOW_SPARK_CONNECT_PORT": str(free_port()),
        "TRIPFLOW_SENSOR_POLL_SECONDS": "2",
        "TRIPFLOW_SPARK_MASTER": "local[2]",
        "TRIPFLOW_SPARK_DRIVER_MEMORY": "1g",
    }
    yield env
    subprocess.run([TRIPFLOW, "down"], env=env, cwd=home, capture_output=True, check=False)
    shutil.rmtree(home, ignore_errors=True)
