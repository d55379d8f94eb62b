"""The Spark job on a standalone cluster (a master and two workers, started by the project),
reading and writing the lake on HDFS and on S3, as `TRIPFLOW_SPARK_MASTER=spark://...` runs
it: spark-submit with the cluster as master, the executors on the workers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest

from tests.conftest import SAMPLE, free_port
from tests.s3_fixture import s3_lake
from tripflow import pipeline
from tripflow.config import Settings
from tripflow.lake import LANDING, Lake
from tripflow.services.hdfs import ManagedHdfs
from tripflow.services.spark_cluster import SparkCluster


@pytest.fixture(scope="module")
def cluster(test_home: Path) -> Iterator[SparkCluster]:
    """Start the master and two workers on free ports for this module's tests."""
    settings = Settings(
        _env_file=None,
        home=test_home / "spark-cluster",
        spark_master=f"spark://127.0.0.1:{free_port()}",
        spark_master_webui_port=free_port(),
        spark_workers=2,
        spark_worker_memory="1g",
        spark_executor_memory="768m",
    )
    started = SparkCluster(settings)
    started.start()
    yield started
    started.stop()


@pytest.fixture(params=["hdfs", "s3"])
def lake(request: pytest.FixtureRequest) -> Lake:
    """A lake of the test's own on the real HDFS or the real S3 server."""
    if request.param == "s3":
        return s3_lake(request.getfixturevalue("s3"))
    hdfs: ManagedHdfs = request.getfixturevalue("hdfs")
    return Lake(
        hdfs.url(f"/tests/{uuid.uuid4().hex}"),
        port=hdfs.settings.hdfs_http_port,
        user=hdfs.user,
    )


def worker_applications(cluster: SparkCluster) -> set[str]:
    """Return the applications whose executors ran on any of the cluster's workers."""
    return {path.name for path in cluster.directory.glob("spark-worker-*/app-*")}


def test_the_job_runs_on_the_workers_and_the_batch_loads(
    conn: psycopg.Connection[Any], lake: Lake, cluster: SparkCluster, settings: Settings
) -> None:
    runner = pipeline.SubmitRunner(
        settings.model_copy(
            update={
                "spark_master": cluster.master_url,
                "spark_driver_memory": "768m",
                "spark_executor_memory": "768m",
            }
        )
    )
    before = worker_applications(cluster)
    lake.put(SAMPLE, LANDING)

    (batch_id,) = pipeline.ingest(conn, lake, runner)

    assert conn.execute("SELECT count(*) FROM tripdata").fetchone() == (100,)
    status = conn.execute(
        "SELECT status, rows_loaded FROM ingestion_batch WHERE batch_id = %s", (batch_id,)
    ).fetchone()
    assert status == ("done", 100)
    # The application's executors ran on both workers (each wrote its work directory).
    (application,) = worker_applications(cluster) - before
    assert all((worker / application).is_dir() for worker in cluster.directory.glob("spark-*"))
    (trusted,) = {
        path.rsplit("/", 1)[0]
        for path in lake.glob(f"data/trusted/tripdata/batch={batch_id}/attempt=*/*.parquet")
    }
    files = lake.glob(f"{trusted}/*.parquet")
    rows = 0
    for path in files:
        with lake.open(path) as handle:
            rows += pq.read_metadata(handle).num_rows
    assert rows == 100
