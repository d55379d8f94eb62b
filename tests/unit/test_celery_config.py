"""The celery executor as the stack declares it: Airflow's environment, the broker, the workers."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tripflow.config import AirflowExecutor, Settings
from tripflow.services import redis, stack
from tripflow.services.airflow import CELERY_EXECUTOR, airflow_environment, celery_workers

WORKERS = ["celery-worker-1", "celery-worker-2"]


def settings_for(tmp_path: Path, executor: AirflowExecutor, **more: Any) -> Settings:
    values = {
        "home": tmp_path,
        "database_url": "postgresql://u:p@127.0.0.1:1/trips",
        "airflow_executor": executor,
        "redis_port": 16380,
        "airflow_log_server_port": 18793,
        "airflow_trigger_log_server_port": 18794,
        "celery_log_server_port": 18795,
    }
    return Settings(_env_file=None, **(values | more))


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_local_executor_runs_no_broker_and_no_workers(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, AirflowExecutor.LOCAL)
    environment = airflow_environment(settings)

    assert environment["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert not any(key.startswith("AIRFLOW__CELERY") for key in environment)
    assert not settings.manages_redis
    assert set(stack.programs(settings, with_airflow=True)).isdisjoint({"redis", *WORKERS})


def test_celery_executor_sends_tasks_through_the_managed_redis(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, AirflowExecutor.CELERY)
    environment = airflow_environment(settings)

    assert settings.manages_redis
    assert environment["AIRFLOW__CORE__EXECUTOR"] == CELERY_EXECUTOR
    assert environment["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:16380/0"
    assert environment["AIRFLOW__CELERY__RESULT_BACKEND"] == (
        "db+postgresql+psycopg2://u:p@127.0.0.1:1/airflow"
    )
    # The tasks build the same settings, executor included, from the environment.
    assert environment["TRIPFLOW_AIRFLOW_EXECUTOR"] == "celery"


def test_stack_runs_redis_and_two_workers_under_its_supervisor(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, AirflowExecutor.CELERY)
    supervised = {program.name: program for program in stack.supervised_programs(settings, True)}

    assert {"redis", *WORKERS} <= set(supervised)
    assert "airflow-scheduler" in supervised
    config = stack.supervisor_config(settings, with_airflow=True)
    for name in ("redis", *WORKERS):
        assert f"[program:{name}]" in config
    # Without Airflow nothing uses the broker or the workers.
    assert set(stack.programs(settings, with_airflow=False)).isdisjoint({"redis", *WORKERS})


def test_workers_serve_logs_on_ports_of_their_own_under_names_of_their_own(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, AirflowExecutor.CELERY, celery_worker_concurrency=3)
    workers = celery_workers(settings)

    ports = [worker.environment["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] for worker in workers]
    names = [option(list(worker.command), "--celery-hostname") for worker in workers]
    assert [worker.name for worker in workers] == WORKERS
    assert ports == ["18795", "18796"]
    # Neither takes the scheduler's or the triggerer's log port.
    assert not {"18793", "18794"} & set(ports)
    assert len(set(names)) == 2
    for worker in workers:
        assert Path(worker.command[0]).name == "airflow"
        assert list(worker.command)[1:3] == ["celery", "worker"]
    assert {option(list(worker.command), "--concurrency") for worker in workers} == {"3"}
    # supervisord passes each its own environment.
    config = stack.supervisor_config(settings, with_airflow=True)
    assert 'environment=AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="18796"' in config


def test_a_redis_url_of_its_own_turns_off_the_managed_redis(tmp_path: Path) -> None:
    broker = "rediss://broker.example.cache.amazonaws.com:6379/0"
    settings = settings_for(tmp_path, AirflowExecutor.CELERY, redis_url=broker)

    assert not settings.manages_redis
    assert airflow_environment(settings)["AIRFLOW__CELERY__BROKER_URL"] == broker
    programs = stack.programs(settings, with_airflow=True)
    assert "redis" not in programs
    assert set(WORKERS) <= set(programs)


def test_redis_listens_on_loopback_and_keeps_an_append_only_file_under_the_home(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, AirflowExecutor.CELERY)
    command = list(redis.program(settings).command)

    assert command[0] == "redis-server"
    assert option(command, "--bind") == "127.0.0.1"
    assert option(command, "--port") == "16380"
    assert option(command, "--dir") == str(tmp_path.resolve() / "redis")
    assert option(command, "--appendonly") == "yes"
    assert option(command, "--save") == ""


def test_redis_that_does_not_answer_is_not_healthy(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, AirflowExecutor.CELERY, redis_port=free_port())
    assert not redis.healthy(settings)


def test_the_executor_airflow_is_given_loads() -> None:
    # Celery 5.7 removed a decorator the provider imports as it loads: pyproject pins below.
    module, _, name = CELERY_EXECUTOR.rpartition(".")
    assert getattr(importlib.import_module(module), name).__name__ == "CeleryExecutor"
