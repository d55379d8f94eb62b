"""The Spark Connect server as the stack declares it: its program, its connection, its check."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port
from tripflow.config import Settings, SparkRunnerMode
from tripflow.services import spark_connect, stack
from tripflow.services.airflow import airflow_environment


def settings_for(tmp_path: Path, runner: SparkRunnerMode) -> Settings:
    return Settings(
        _env_file=None,
        home=tmp_path,
        database_url="postgresql://u@127.0.0.1:1/db",
        spark_runner=runner,
        spark_connect_port=16123,
        spark_master="local[3]",
        spark_driver_memory="3g",
    )


def test_stack_runs_a_spark_connect_server_only_for_the_connect_runner(tmp_path: Path) -> None:
    connect = stack.programs(settings_for(tmp_path, SparkRunnerMode.CONNECT), with_airflow=True)
    submit = stack.programs(settings_for(tmp_path, SparkRunnerMode.SUBMIT), with_airflow=True)
    assert set(connect) - set(submit) == {"spark-connect"}
    assert "[program:spark-connect]" in stack.supervisor_config(
        settings_for(tmp_path, SparkRunnerMode.CONNECT), with_airflow=False
    )


def test_server_listens_on_loopback_with_the_master_memory_and_utc_of_the_settings(
    tmp_path: Path,
) -> None:
    command = spark_connect.command(settings_for(tmp_path, SparkRunnerMode.CONNECT))
    pairs = list(itertools.pairwise(command))
    options = dict(pairs)
    confs = dict(value.split("=", 1) for flag, value in pairs if flag == "--conf")
    assert Path(command[0]) == spark_connect.spark_home() / "bin" / "spark-submit"
    assert options["--class"] == "org.apache.spark.sql.connect.service.SparkConnectServer"
    assert (options["--master"], options["--driver-memory"]) == ("local[3]", "3g")
    assert confs["spark.connect.grpc.binding.address"] == "127.0.0.1"
    assert confs["spark.connect.grpc.binding.port"] == "16123"
    assert confs["spark.sql.session.timeZone"] == "UTC"
    assert confs["spark.ui.enabled"] == "false"
    assert spark_connect.environment()["SPARK_LOCAL_IP"] == "127.0.0.1"


def test_airflow_gets_a_spark_connect_connection_to_the_stacks_server(tmp_path: Path) -> None:
    environment = airflow_environment(settings_for(tmp_path, SparkRunnerMode.CONNECT))
    connection = json.loads(environment["AIRFLOW_CONN_SPARK_CONNECT_DEFAULT"])
    assert connection == {"conn_type": "spark_connect", "host": "127.0.0.1", "port": 16123}
    assert environment["TRIPFLOW_SPARK_RUNNER"] == "connect"


def test_airflow_binds_spark_to_loopback_unless_told_an_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path, SparkRunnerMode.SUBMIT)
    monkeypatch.delenv("SPARK_LOCAL_IP", raising=False)
    assert airflow_environment(settings)["SPARK_LOCAL_IP"] == "127.0.0.1"

    # A driver on YARN or a remote master binds an address its executors can reach.
    monkeypatch.setenv("SPARK_LOCAL_IP", "10.0.3.7")
    environment = airflow_environment(settings)
    assert environment["SPARK_LOCAL_IP"] == "10.0.3.7"
    assert environment["PYSPARK_PYTHON"] == sys.executable


def test_nothing_listening_is_no_server() -> None:
    assert spark_connect.version(f"sc://127.0.0.1:{free_port()}") is None
