"""The `tripdata-process` DAG run by `airflow dags test` (dag.test()) in its own process, with
its metadata in the real PostgreSQL, the warehouse in a fresh PostGIS database and Spark on
the run's Spark Connect server or started by spark-submit: sensor, trigger, Spark and every
pipeline step for real."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import SAMPLE
from tripflow import pipeline
from tripflow.config import Settings, SparkRunnerMode
from tripflow.lake import LANDING, Lake
from tripflow.services import spark_connect
from tripflow.services.airflow import DAG_ID, airflow_environment
from tripflow.services.postgres import ManagedPostgres
from tripflow.warehouse import ingestions
from tripflow.warehouse.ingestions import Status

AIRFLOW = str(Path(sys.executable).parent / "airflow")
TASK_IDS = {
    "wait_for_files",
    "claim_batch",
    "validate_with_spark",
    "publish_to_tripdata",
    "archive_files",
}


def _sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


def _base_environment() -> dict[str, str]:
    # Nothing of a developer's own Airflow or tripflow setup may leak into the run.
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "TRIPFLOW_", "PYSPARK_", "SPARK_"))
    }


def _run(command: list[str], environment: dict[str, str], cwd: Path) -> None:
    result = subprocess.run(
        command, env=environment, cwd=cwd, capture_output=True, text=True, timeout=900
    )
    output = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 0, "\n".join(output[-60:])


@pytest.fixture(scope="module")
def metadata_url(
    postgres_cluster: ManagedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """Create and migrate Airflow's metadata database once for the module."""
    url = _sqlalchemy_url(postgres_cluster.create_database("airflow_dagtest"))
    home = tmp_path_factory.mktemp("airflow-migrate")
    environment = _base_environment() | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    _run([AIRFLOW, "db", "migrate"], environment, home)
    return url


@pytest.fixture
def dag_settings(settings: Settings, metadata_url: str) -> Settings:
    """The test's settings, with Airflow's metadata in the migrated database."""
    return settings.model_copy(
        update={"airflow_database_url": metadata_url, "sensor_poll_seconds": 0.5}
    )


@dataclass(frozen=True)
class DagRun:
    """What one run left in Airflow's metadata: task states and the sensor's result."""

    states: dict[str, str]
    ready_files: Any
    # What the Spark task returned: how the job ran.
    spark: Any


def run_dag(settings: Settings, metadata_url: str) -> DagRun:
    """Run the DAG once with `airflow dags test`; return what the run recorded."""
    environment = _base_environment() | airflow_environment(settings)
    _run([AIRFLOW, "dags", "test", DAG_ID], environment, settings.home_dir)
    with psycopg.connect(metadata_url.replace("+psycopg2", "", 1)) as metadata:
        run_id = metadata.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = %s ORDER BY id DESC LIMIT 1", (DAG_ID,)
        ).fetchone()
        assert run_id is not None
        states = metadata.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = %s AND run_id = %s",
            (DAG_ID, run_id[0]),
        ).fetchall()
        results = dict(
            metadata.execute(
                "SELECT task_id, value FROM xcom WHERE dag_id = %s AND run_id = %s"
                " AND key = 'return_value'",
                (DAG_ID, run_id[0]),
            ).fetchall()
        )
    return DagRun(dict(states), results.get("wait_for_files"), results.get("validate_with_spark"))


def trusted_rows(
    spark: Any, lake: Lake, conn: psycopg.Connection[Any], batch_id: int
) -> list[dict[str, Any]]:
    """Return a batch's trusted rows (of the Spark run recorded for it) without their file
    id (each delivery has its own)."""
    directory = pipeline.batch_trusted_dir(conn, batch_id)
    frame = spark.read.parquet(lake.uri(directory)).drop("file_id")
    return sorted((row.asDict() for row in frame.collect()), key=repr)


def scalar(conn: psycopg.Connection[Any], query: str, *params: object) -> Any:
    row = conn.execute(query, params).fetchone()
    conn.commit()
    assert row is not None
    return row[0]


def test_dag_run_loads_the_sample_once_and_counts_a_redelivery_as_duplicates(
    dag_settings: Settings,
    metadata_url: str,
    conn: psycopg.Connection[Any],
    connect_stack: Settings,
    spark: Any,
) -> None:
    # The first delivery runs on the Spark Connect server, the second with spark-submit.
    on_server = dag_settings.model_copy(
        update={"spark_connect_port": connect_stack.spark_connect_port}
    )
    submitted = dag_settings.model_copy(update={"spark_runner": SparkRunnerMode.SUBMIT})
    lake = Lake(dag_settings.lake_root)
    lake.put(SAMPLE, LANDING)

    run = run_dag(on_server, metadata_url)

    assert run.states == dict.fromkeys(TASK_IDS, "success")
    assert run.spark is not None
    attempt = run.spark.pop("attempt")
    assert run.spark == {"runner": "connect", "url": f"{spark_connect.url(connect_stack)}/"}
    assert run.ready_files == [f"{LANDING}/{SAMPLE.name}"]
    assert scalar(conn, "SELECT count(*) FROM tripdata") == 100
    first = scalar(conn, "SELECT max(batch_id) FROM ingestion_batch")
    first_summary = ingestions.batch_summary(conn, first)
    # The run that wrote the Parquet is the one recorded on the batch.
    assert ingestions.get_batch(conn, first).spark_attempt == attempt
    assert (first_summary["status"], first_summary["rows_loaded"]) == ("done", 100)
    assert lake.list_files(LANDING) == []
    assert lake.exists(f"data/processed/tripdata/{first}/{SAMPLE.name}")

    lake.put(SAMPLE, LANDING)
    run = run_dag(submitted, metadata_url)

    assert run.states == dict.fromkeys(TASK_IDS, "success")
    assert run.spark is not None
    attempt = run.spark.pop("attempt")
    assert run.spark == {"runner": "spark-submit"}
    assert ingestions.get_batch(conn, first).spark_attempt != attempt
    assert scalar(conn, "SELECT count(*) FROM tripdata") == 100
    second = scalar(conn, "SELECT max(batch_id) FROM ingestion_batch")
    summary = ingestions.batch_summary(conn, second)
    assert second != first
    assert (summary["status"], summary["rows_read"], summary["rows_loaded"]) == ("done", 100, 0)
    assert summary["rows_duplicate"] == 100
    assert lake.exists(f"data/processed/tripdata/{second}/{SAMPLE.name}")
    # Both ways wrote the same Parquet.
    assert trusted_rows(spark, lake, conn, second) == trusted_rows(spark, lake, conn, first)
    assert len(trusted_rows(spark, lake, conn, first)) == 100


def test_dag_run_resumes_a_batch_past_spark_without_running_spark_again(
    dag_settings: Settings, metadata_url: str, conn: psycopg.Connection[Any], spark: Any
) -> None:
    lake = Lake(dag_settings.lake_root)
    lake.put(SAMPLE, LANDING)
    # A crash after the Spark step: the batch is processed, its file still in landing.
    batch_id = pipeline.claim_or_resume(conn, lake)
    assert batch_id is not None
    pipeline.run_batch(conn, lake, pipeline.SessionRunner(spark), batch_id, until=Status.PROCESSED)
    written = {
        path: lake.fs.info(path)["mtime"]
        for path in lake.fs.find(lake.full_path(pipeline.batch_trusted_dir(conn, batch_id)))
    }

    run = run_dag(dag_settings, metadata_url)

    assert run.states == dict.fromkeys(TASK_IDS, "success")
    # The Spark task found the batch past it and ran nothing: Spark's output is untouched.
    assert {path: lake.fs.info(path)["mtime"] for path in written} == written
    assert scalar(conn, "SELECT count(*) FROM tripdata") == 100
    summary = ingestions.batch_summary(conn, batch_id)
    assert (summary["status"], summary["rows_loaded"]) == ("done", 100)
    assert scalar(conn, "SELECT count(*) FROM ingestion_batch") == 1
