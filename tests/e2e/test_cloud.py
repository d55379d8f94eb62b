"""The seed's cloud design on one machine, each part started by the project: the lake on a
real S3 server, the Spark job on a standalone cluster (master and two workers) through the
warm Connect server, and the DAG loading what lands in the bucket."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.conftest import SAMPLE, free_port
from tests.e2e.command import get, tripflow
from tripflow.config import Settings
from tripflow.lake import LANDING, open_lake

pytestmark = pytest.mark.e2e


def cloud(environment: dict[str, str]) -> dict[str, str]:
    """Add the S3 lake and the Spark standalone cluster to a stack's environment."""
    return environment | {
        "TRIPFLOW_LAKE_URL": "s3://tripflow/lake",
        "TRIPFLOW_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "TRIPFLOW_SPARK_MASTER": f"spark://127.0.0.1:{free_port()}",
        "TRIPFLOW_SPARK_MASTER_WEBUI_PORT": str(free_port()),
        "TRIPFLOW_SPARK_WORKER_MEMORY": "1g",
        "TRIPFLOW_SPARK_EXECUTOR_MEMORY": "768m",
    }


def lake_settings(environment: dict[str, str]) -> Settings:
    """Return the settings the stack of `environment` runs with."""
    values = {
        key.removeprefix("TRIPFLOW_").lower(): value
        for key, value in environment.items()
        if key.startswith("TRIPFLOW_")
    }
    return Settings(_env_file=None, **values)


def test_the_dag_loads_a_file_landed_in_s3_with_spark_on_the_cluster(
    environment: dict[str, str], tmp_path: Path
) -> None:
    environment = cloud(environment)
    tripflow(environment, "up")

    result = tripflow(environment, "add-file", "--wait", "--json", "--timeout", "300", str(SAMPLE))
    (batch,) = json.loads(result.stdout)

    assert (batch["status"], batch["rows_loaded"]) == ("done", 100)
    lake = open_lake(lake_settings(environment))
    assert lake.list_files(LANDING) == []
    assert lake.exists(f"data/processed/tripdata/{batch['batch_id']}/trips.csv")
    assert lake.glob(f"data/trusted/tripdata/batch={batch['batch_id']}/attempt=*/*.parquet")
    url = tripflow(environment, "db", "url").stdout.strip()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM tripdata").fetchone() == (100,)
    api = f"http://127.0.0.1:{environment['TRIPFLOW_API_PORT']}"
    status, _, answer = get(f"{api}/weekly-average?bbox=14.2,49.9,14.7,50.2")
    assert status == 200 and answer["trips"] > 0
    report = tripflow(environment, "status").stdout
    for service in ("s3-server", "spark-master", "spark-worker-1", "spark-worker-2"):
        assert service in report
    # The Connect server's application holds executors on both workers.
    home = Path(environment["TRIPFLOW_HOME"])
    for worker in ("spark-worker-1", "spark-worker-2"):
        assert list((home / "spark" / worker).glob("app-*")), worker
