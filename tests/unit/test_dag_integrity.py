"""The DAG folder loads cleanly and `tripdata-process` has the designed shape.

Airflow reads its configuration when first imported, so everything Airflow runs in a child
process with its own AIRFLOW_HOME and SQLite URL: nothing leaks into the rest of the suite.
The child runs with warnings as errors, like the suite, so a deprecated call in the DAG or
in tripflow.orchestration fails here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tripflow.services.airflow import DAG_ID, DAGS_FOLDER

INSPECT = r"""
import asyncio, importlib, json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.exceptions import TaskDeferred

from tripflow import pipeline
from tripflow.lake import Lake, LANDING
from tripflow.orchestration import tasks
from tripflow.orchestration.triggers import stable_files

bag = DagBag(dag_folder=sys.argv[1])
report = {"import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
          "dag_ids": sorted(bag.dag_ids)}
dag = bag.dags.get(sys.argv[2])
if dag is not None:
    report["schedule"] = type(dag.timetable).__name__
    report["max_active_runs"] = dag.max_active_runs
    report["catchup"] = dag.catchup
    report["has_doc"] = bool(dag.doc_md and dag.doc_md.strip())
    report["tasks"] = {
        t.task_id: {
            "type": type(t).__name__,
            "downstream": sorted(t.downstream_task_ids),
            "retries": t.retries,
            "trigger_rule": str(t.trigger_rule.value),
        }
        for t in dag.tasks
    }
    spark = dag.get_task("validate_with_spark")
    callable_ = spark.python_callable
    report["spark"] = {
        "callable": f"{callable_.__module__}.{callable_.__qualname__}",
        "callbacks": sorted(
            f"{kind}:{callback.__module__}.{callback.__qualname__}"
            for kind in ("on_retry_callback", "on_failure_callback")
            for callback in (getattr(spark, kind) or [])
        ),
        "application": tasks.spark_application(),
        "expected_application": pipeline.job_application(),
    }
    lake = Lake(sys.argv[3])
    lake.write_bytes(f"{LANDING}/b.csv", b"complete")
    lake.write_bytes(f"{LANDING}/a.csv._COPYING_", b"half")
    lake.write_bytes(f"{LANDING}/c.csv.tmp", b"half")
    lake.write_bytes(f"{LANDING}/.hidden", b"x")
    try:
        dag.get_task("wait_for_files").execute({})
        report["sensor"] = {"deferred": False}
    except TaskDeferred as deferred:
        classpath, kwargs = deferred.trigger.serialize()
        module, _, name = classpath.rpartition(".")
        trigger_class = getattr(importlib.import_module(module), name)
        rebuilt = trigger_class(**{**kwargs, "poll_seconds": 0.01})
        async def first_event():
            return await anext(rebuilt.run(), None)
        event = asyncio.run(first_event())
        report["sensor"] = {
            "deferred": True,
            "method": deferred.method_name,
            "classpath": classpath,
            "kwargs": kwargs,
            "event": event.payload if event is not None else None,
        }
report["stable"] = stable_files({"a": 1, "b": 5, "gone": 3}, {"a": 1, "b": 7, "new": 2})
print("REPORT " + json.dumps(report))
"""


def inspect_dag_folder(
    script: str, directory: Path, settings: dict[str, str], *arguments: str
) -> dict[str, Any]:
    """Run an inspection script over the DAG folder in a child process (its own Airflow home
    on SQLite, tripflow's settings from `settings` only); return the REPORT it printed."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "TRIPFLOW_"))
    } | {
        "AIRFLOW_HOME": str(directory / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{directory / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "TRIPFLOW_HOME": str(directory / "home"),
        **settings,
    }
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", script, str(DAGS_FOLDER), DAG_ID, *arguments],
        env=environment,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and lines, (result.stdout + result.stderr)[-4000:]
    found: dict[str, Any] = json.loads(lines[-1].removeprefix("REPORT "))
    return found


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Load the DAG folder in a child process; return what it found."""
    directory = tmp_path_factory.mktemp("dagbag")
    lake_url = f"file://{directory / 'lake'}"
    settings = {"TRIPFLOW_LAKE_URL": lake_url, "TRIPFLOW_SENSOR_POLL_SECONDS": "2.5"}
    found = inspect_dag_folder(INSPECT, directory, settings, lake_url)
    found["lake_url"] = lake_url
    return found


def test_dag_folder_loads_without_import_errors(report: dict[str, Any]) -> None:
    assert report["import_errors"] == {}
    assert report["dag_ids"] == [DAG_ID]


def test_tasks_run_in_the_designed_order(report: dict[str, Any]) -> None:
    downstream = {task_id: set(task["downstream"]) for task_id, task in report["tasks"].items()}

    assert downstream == {
        "wait_for_files": {"claim_batch"},
        # Every step after the claim reads the batch id (or Spark's arguments) from it.
        "claim_batch": {"validate_with_spark", "publish_to_tripdata", "archive_files"},
        "validate_with_spark": {"publish_to_tripdata"},
        "publish_to_tripdata": {"archive_files"},
        "archive_files": set(),
    }


def test_every_task_waits_for_the_success_of_the_one_before(report: dict[str, Any]) -> None:
    assert {task_id: task["trigger_rule"] for task_id, task in report["tasks"].items()} == (
        dict.fromkeys(report["tasks"], "all_success")
    )


def test_every_task_retries(report: dict[str, Any]) -> None:
    assert {task_id: task["retries"] > 0 for task_id, task in report["tasks"].items()} == (
        dict.fromkeys(report["tasks"], True)
    )


def test_dag_runs_continuously_one_run_at_a_time(report: dict[str, Any]) -> None:
    assert report["schedule"] == "ContinuousTimetable"
    assert report["max_active_runs"] == 1
    assert report["catchup"] is False
    assert report["has_doc"]


def test_spark_task_runs_the_preprocess_job_and_records_its_failures(
    report: dict[str, Any],
) -> None:
    assert report["tasks"]["validate_with_spark"]["type"] == "_PythonDecoratedOperator"
    assert report["spark"]["callable"] == "tripflow.orchestration.tasks.validate"
    record = "tripflow.orchestration.tasks.record_spark_failure"
    assert report["spark"]["callbacks"] == [
        f"on_failure_callback:{record}",
        f"on_retry_callback:{record}",
    ]
    # What spark-submit runs when the settings (or an unanswering server) call for it.
    assert Path(report["spark"]["application"]) == Path(report["spark"]["expected_application"])


def test_sensor_defers_at_once_to_the_landing_trigger_from_settings(
    report: dict[str, Any],
) -> None:
    sensor = report["sensor"]

    assert sensor["deferred"] is True
    assert sensor["method"] == "execute_complete"
    assert sensor["classpath"] == "tripflow.orchestration.triggers.LandingFilesTrigger"
    # No lake stored with the trigger: it reads TRIPFLOW_LAKE_URL (the report's lake) where
    # it runs, so a restarted stack with another lake is followed.
    assert sensor["kwargs"] == {
        "lake_url": None,
        "poll_seconds": 2.5,
        "directory": "data/raw/tripdata",
        "lake_options": {},
    }


def test_trigger_reports_only_complete_files(report: dict[str, Any]) -> None:
    assert report["sensor"]["event"] == {
        "files": [{"path": "data/raw/tripdata/b.csv", "size": len(b"complete")}]
    }


def test_only_files_of_unchanged_size_are_stable(report: dict[str, Any]) -> None:
    assert report["stable"] == ["a"]


EVENTS_INSPECT = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags[sys.argv[2]]
schedule = dag.timetable
report = {
    "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    "schedule": type(schedule).__name__,
    "sweep": schedule.timetable.expression,
    "tasks": {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks},
    "assets": [
        {"uri": asset.uri, "watchers": [[w.name, *w.trigger.serialize()] for w in asset.watchers]}
        for asset in schedule.asset_condition.objects
    ],
}
print("REPORT " + json.dumps(report))
"""


def test_with_bucket_events_a_run_starts_from_the_watched_landing_dir_or_the_sweep(
    tmp_path: Path,
) -> None:
    settings = {
        "TRIPFLOW_LAKE_URL": "s3://trips/feed",
        "TRIPFLOW_EVENTS_URL": "kafka://127.0.0.1:19092/lake-events",
        "TRIPFLOW_EVENTS_SWEEP_MINUTES": "7",
    }
    report = inspect_dag_folder(EVENTS_INSPECT, tmp_path, settings)

    assert report["import_errors"] == {}
    assert (report["schedule"], report["sweep"]) == ("AssetOrTimeSchedule", "*/7 * * * *")
    # No sensor: the run's first task claims whatever waits.
    assert report["tasks"] == {
        "claim_batch": ["archive_files", "publish_to_tripdata", "validate_with_spark"],
        "validate_with_spark": ["publish_to_tripdata"],
        "publish_to_tripdata": ["archive_files"],
        "archive_files": [],
    }
    ((asset),) = report["assets"]
    assert asset["uri"] == "s3://trips/feed/data/raw/tripdata"
    ((name, classpath, kwargs),) = asset["watchers"]
    assert name == "tripflow_bucket_events"
    assert classpath == "airflow.providers.apache.kafka.triggers.await_message.AwaitMessageTrigger"
    assert kwargs["topics"] == ["lake-events"]
    assert kwargs["apply_function"] == "tripflow.orchestration.events.landed_files"
    assert kwargs["apply_function_kwargs"] == {"lake_url": "s3://trips/feed"}
    assert kwargs["kafka_config_id"] == "kafka_default"
