"""The whole local stack as `tripflow up` starts it: Airflow's sensor notices files dropped
into the lake and the DAG loads them; nothing but the files is handed to it."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.conftest import SAMPLE, free_port
from tests.e2e.command import get, tripflow
from tripflow.lake import LANDING, Lake

NEW_TRIPS = [
    "region,origin_coord,destination_coord,datetime,datasource",
    *(
        f"Turin,POINT (7.6{i} 45.0{i}),POINT (7.7{i} 45.1{i}),2018-06-1{i} 08:00:00,new_source"
        for i in range(7)
    ),
]


def add_and_wait(environment: dict[str, str], path: Path) -> dict[str, object]:
    result = tripflow(environment, "add-file", "--wait", "--json", "--timeout", "300", str(path))
    (batch,) = json.loads(result.stdout)
    return batch  # type: ignore[no-any-return]


@pytest.mark.e2e
def test_the_dag_loads_each_dropped_file_once(environment: dict[str, str], tmp_path: Path) -> None:
    tripflow(environment, "up")

    first = add_and_wait(environment, SAMPLE)
    second_file = tmp_path / "turin_june.csv"
    second_file.write_text("\n".join(NEW_TRIPS) + "\n")
    second = add_and_wait(environment, second_file)
    again = add_and_wait(environment, SAMPLE)

    assert (first["status"], first["rows_loaded"]) == ("done", 100)
    assert (second["rows_read"], second["rows_loaded"], second["rows_duplicate"]) == (7, 7, 0)
    assert (again["rows_loaded"], again["rows_duplicate"]) == (0, 100)
    files = again["files"]
    assert isinstance(files, list)
    assert files[0]["same_as_file_id"] == first["files"][0]["file_id"]  # type: ignore[index]
    url = tripflow(environment, "db", "url").stdout.strip()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM tripdata").fetchone() == (107,)
    api = f"http://127.0.0.1:{environment['TRIPFLOW_API_PORT']}"
    status, _, answer = get(f"{api}/weekly-average?datasource=new_source")
    assert (status, answer["trips"]) == (200, 7)
    report = tripflow(environment, "status").stdout
    for service in ("airflow-scheduler", "airflow-triggerer", "airflow-dag-processor", "api"):
        assert service in report
    assert "FATAL" not in report and "BACKOFF" not in report


@pytest.mark.e2e
def test_the_dag_loads_a_file_put_into_hdfs_and_moves_it_inside_hdfs(
    environment: dict[str, str],
) -> None:
    rpc_port, http_port = free_port(), free_port()
    environment |= {
        "TRIPFLOW_LAKE_URL": f"hdfs://127.0.0.1:{rpc_port}/tripflow",
        "TRIPFLOW_HDFS_PORT": str(rpc_port),
        "TRIPFLOW_HDFS_HTTP_PORT": str(http_port),
        # 0: the DataNode binds free ports of the system's choosing.
        "TRIPFLOW_HDFS_DATANODE_PORT": "0",
        "TRIPFLOW_HDFS_DATANODE_HTTP_PORT": "0",
        "TRIPFLOW_HDFS_DATANODE_IPC_PORT": "0",
    }
    tripflow(environment, "up")

    batch = add_and_wait(environment, SAMPLE)

    assert (batch["status"], batch["rows_loaded"]) == ("done", 100)
    lake = Lake(environment["TRIPFLOW_LAKE_URL"], port=http_port, user="tripflow")
    assert lake.list_files(LANDING) == []
    assert lake.exists(f"data/processed/tripdata/{batch['batch_id']}/trips.csv")
    assert lake.glob(f"data/trusted/tripdata/batch={batch['batch_id']}/attempt=*/*.parquet")
    assert "namenode" in tripflow(environment, "status").stdout
