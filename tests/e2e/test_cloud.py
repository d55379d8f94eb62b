"""The seed's cloud design on one machine, each part started by the project (`tripflow up`
with the cloud profile's settings): the lake on a real S3 server whose uploads become events
on Kafka, the DAG started by those events (an AssetWatcher on the triggerer) and run by
Celery workers through Redis, and the Spark job on a standalone cluster (a master and two
workers) through the warm Connect server."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, Producer
from psycopg.conninfo import make_conninfo

from tests.conftest import SAMPLE, free_port
from tests.e2e.command import get, tripflow
from tripflow.config import Settings
from tripflow.lake import LANDING, open_lake
from tripflow.services import stack
from tripflow.services.airflow import DAG_ID, METADATA_DATABASE
from tripflow.services.supervisor import http_get_json, supervisor_call, wait_for

pytestmark = pytest.mark.e2e

NEW_TRIPS = [
    "region,origin_coord,destination_coord,datetime,datasource",
    *(
        f"Turin,POINT (7.6{i} 45.0{i}),POINT (7.7{i} 45.1{i}),2018-06-1{i} 08:00:00,evented"
        for i in range(7)
    ),
]


def cloud(environment: dict[str, str]) -> dict[str, str]:
    """Add the cloud profile (as `make run PROFILE=cloud` sets it) on free ports."""
    return environment | {
        "TRIPFLOW_LAKE_URL": "s3://tripflow/lake",
        "TRIPFLOW_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "TRIPFLOW_EVENTS_URL": f"kafka://127.0.0.1:{free_port()}/tripflow-lake",
        "TRIPFLOW_KAFKA_CONTROLLER_PORT": str(free_port()),
        # No sweep: every file here must come through its event.
        "TRIPFLOW_EVENTS_SWEEP_MINUTES": "0",
        "TRIPFLOW_SPARK_MASTER": f"spark://127.0.0.1:{free_port()}",
        "TRIPFLOW_SPARK_MASTER_WEBUI_PORT": str(free_port()),
        "TRIPFLOW_SPARK_WORKER_MEMORY": "1g",
        "TRIPFLOW_SPARK_EXECUTOR_MEMORY": "768m",
        "TRIPFLOW_AIRFLOW_EXECUTOR": "celery",
        "TRIPFLOW_REDIS_PORT": str(free_port()),
        "TRIPFLOW_CELERY_LOG_SERVER_PORT": str(free_port()),
    }


def stack_settings(environment: dict[str, str]) -> Settings:
    """Return the settings the stack of `environment` runs with."""
    values = {
        key.removeprefix("TRIPFLOW_").lower(): value
        for key, value in environment.items()
        if key.startswith("TRIPFLOW_")
    }
    return Settings(_env_file=None, **values)


def airflow_get(settings: Settings, path: str) -> Any:
    """GET a document of Airflow's REST API."""
    status, body = http_get_json(
        f"http://127.0.0.1:{settings.airflow_port}/api/v2/{path}",
        {"Authorization": f"Bearer {stack.airflow_token(settings)}"},
    )
    assert status == 200, (path, status)
    return body


def landing_events(settings: Settings) -> list[dict[str, Any]]:
    """Return the asset events of the watched landing dir, oldest first."""
    events = airflow_get(settings, "assets/events?order_by=timestamp&limit=100")
    return [event for event in events["asset_events"] if event["uri"].endswith(LANDING)]


def dag_runs(settings: Settings) -> list[dict[str, Any]]:
    """Return the DAG's runs, oldest first."""
    runs = airflow_get(settings, f"dags/{DAG_ID}/dagRuns?order_by=run_after&limit=100")
    return list(runs["dag_runs"])


def task_instances(settings: Settings, run_id: str) -> list[dict[str, Any]]:
    """Return the task instances of one DAG run."""
    body = airflow_get(settings, f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")
    return list(body["task_instances"])


def wait_for_batches(url: str, count: int, timeout: float = 300) -> list[tuple[Any, ...]]:
    """Wait until `count` batches are done; return (batch id, rows loaded, duplicates)."""

    def done() -> list[tuple[Any, ...]]:
        with psycopg.connect(url) as conn:
            return conn.execute(
                "SELECT batch_id, rows_loaded, rows_duplicate FROM ingestion_batch"
                " WHERE status = 'done' ORDER BY batch_id"
            ).fetchall()

    wait_for(lambda: len(done()) >= count, timeout, f"{count} batches done")
    return done()


def assert_ran_on_celery(url: str, logs: Path) -> None:
    """Assert that every task instance that succeeded was a Celery task a worker received."""
    with psycopg.connect(make_conninfo(url, dbname=METADATA_DATABASE)) as conn:
        # The LocalExecutor records no Celery task id.
        done = conn.execute(
            "SELECT task_id, external_executor_id FROM task_instance"
            " WHERE dag_id = %s AND state = 'success'",
            (DAG_ID,),
        ).fetchall()
    assert {task for task, _ in done} >= {"claim_batch", "validate_with_spark", "archive_files"}
    received = set()
    for worker in ("celery-worker-1", "celery-worker-2"):
        text = (logs / f"{worker}.log").read_text()
        received |= set(re.findall(r"execute_workload\[([0-9a-f-]+)\] received", text))
    assert all(celery_id and celery_id in received for _, celery_id in done), (done, received)


def program(settings: Settings, method: str, name: str) -> None:
    """Stop or start one program of the stack's supervisor."""
    supervisor_call(settings.home_dir / "run" / "supervisor.sock", method, name)


def test_the_cloud_profile_runs_the_dag_from_bucket_events_on_celery_and_the_cluster(
    environment: dict[str, str], tmp_path: Path
) -> None:
    environment = cloud(environment)
    settings = stack_settings(environment)
    tripflow(environment, "up")
    url = tripflow(environment, "db", "url").stdout.strip()
    lake = open_lake(settings)

    # 1. A file uploaded into the bucket: its event starts the run.
    result = tripflow(environment, "add-file", "--wait", "--json", "--timeout", "300", str(SAMPLE))
    (batch,) = json.loads(result.stdout)
    assert (batch["status"], batch["rows_loaded"]) == ("done", 100)
    (first_run,) = dag_runs(settings)
    assert first_run["run_type"] == "asset_triggered"
    (event,) = landing_events(settings)
    assert json.loads(event["extra"]["payload"])["keys"] == [f"lake/{LANDING}/trips.csv"]
    # Every task ran on a Celery worker, and the Spark job's executors on both workers.
    assert_ran_on_celery(url, settings.home_dir / "logs")
    for worker in ("spark-worker-1", "spark-worker-2"):
        assert list((settings.home_dir / "spark" / worker).glob("app-*")), worker
    assert lake.exists(f"data/processed/tripdata/{batch['batch_id']}/trips.csv")

    # 2. An upload while the triggerer is down: the event waits in Kafka, nothing is lost.
    program(settings, "stopProcess", "airflow-triggerer")
    second = tmp_path / "turin.csv"
    second.write_text("\n".join(NEW_TRIPS) + "\n")
    lake.put(second, LANDING)
    time.sleep(10)
    assert [item.name for item in lake.list_files(LANDING)] == ["turin.csv"]
    program(settings, "startProcess", "airflow-triggerer")
    batches = wait_for_batches(url, 2)
    assert batches[1][1:] == (7, 0)
    events = landing_events(settings)
    assert len(events) == 2
    assert json.loads(events[1]["extra"]["payload"])["keys"] == [f"lake/{LANDING}/turin.csv"]

    # 3. The same event twice: a run, but nothing claimed or loaded again.
    runs_before = len(dag_runs(settings))
    bootstrap, topic = settings.events or ("", "")
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "e2e-reader", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    sent = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        message = consumer.poll(1)
        if message is not None and b"turin.csv" in (message.value() or b""):
            sent.append(message.value())
            break
    consumer.close()
    assert sent, "the upload's event is not on the topic"
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, sent[0])
    producer.flush(10)
    wait_for(lambda: len(landing_events(settings)) == 3, 120, "the repeated event")
    wait_for(
        lambda: (
            len(runs := dag_runs(settings)) > runs_before
            and runs[-1]["state"] in ("success", "failed")
        ),
        300,
        "the repeated event's run to end",
    )
    last = dag_runs(settings)[-1]
    assert last["state"] == "success"
    claim = {
        item["task_id"]: item["state"] for item in task_instances(settings, last["dag_run_id"])
    }
    assert claim["claim_batch"] == "skipped"
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM ingestion_batch").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM tripdata").fetchone() == (107,)

    api = f"http://127.0.0.1:{environment['TRIPFLOW_API_PORT']}"
    status, _, answer = get(f"{api}/weekly-average?datasource=evented")
    assert (status, answer["trips"]) == (200, 7)
    report = tripflow(environment, "status").stdout
    for service in ("kafka", "s3-server", "spark-master", "redis", "celery-worker-1"):
        assert service in report, report
