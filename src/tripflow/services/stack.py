"""The local stack under one supervisor: Airflow's four services, the API and the warm Spark
(a Spark Connect server, when TRIPFLOW_SPARK_RUNNER is connect).

supervisord (a well-kept process supervisor) starts, restarts and stops the long-running
processes; PostgreSQL runs beside it under pg_ctl, which supervises itself."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from tripflow.config import Settings, SparkRunnerMode
from tripflow.services import airflow, spark_connect
from tripflow.services.postgres import ManagedPostgres
from tripflow.services.supervisor import (
    Program,
    ServiceError,
    ServiceState,
    Supervisor,
    http_get_json,
    tree_memory_mb,
    venv_bin,
    wait_for,
)
from tripflow.warehouse import roles

AIRFLOW_PROGRAMS = (
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)


class StackError(ServiceError):
    """A service of the stack did not start or answer."""


def run_directory(settings: Settings) -> Path:
    """Return the directory of sockets and pid files."""
    return settings.home_dir / "run"


def log_directory(settings: Settings) -> Path:
    """Return the directory of the services' logs."""
    return settings.home_dir / "logs"


def programs(settings: Settings, with_airflow: bool) -> dict[str, list[str]]:
    """Return the command of each supervised program."""
    commands = {
        "api": [
            venv_bin("gunicorn"),
            "--bind",
            f"{settings.api_host}:{settings.api_port}",
            "--workers",
            str(settings.api_workers),
            "--threads",
            # Event streams get threads of their own (api/events.py caps them per worker).
            str(settings.api_threads + settings.api_max_streams),
            # gunicorn 27 otherwise opens ~/.gunicorn/gunicorn.ctl, one path shared by every
            # gunicorn of the user: a second stack (or the tests) would take it over.
            "--no-control-socket",
            # Each worker reads the summary and attaches the serving copy before it serves.
            "--config",
            "python:tripflow.api.gunicorn_hooks",
            "tripflow.api.wsgi:app",
        ]
    }
    if runs_spark_connect(settings):
        commands[spark_connect.PROGRAM] = spark_connect.command(settings)
    if with_airflow:
        commands |= {
            "airflow-api-server": [
                venv_bin("airflow"),
                "api-server",
                "--port",
                str(settings.airflow_port),
                "--host",
                "127.0.0.1",
            ],
            "airflow-scheduler": [venv_bin("airflow"), "scheduler"],
            "airflow-dag-processor": [venv_bin("airflow"), "dag-processor"],
            "airflow-triggerer": [venv_bin("airflow"), "triggerer"],
        }
    commands |= {
        program.name: list(program.command) for program in _declared(settings, with_airflow)
    }
    return commands


def _declared(settings: Settings, with_airflow: bool) -> list[Program]:
    # The programs whose services declare them whole, with an environment or a start order
    # of their own: the broker and the Celery workers, which only Airflow uses.
    if not with_airflow:
        return []
    declared = []
    if settings.manages_redis:
        # Imported here, as the redis package it loads: only the celery executor needs them.
        from tripflow.services import redis

        declared.append(redis.program(settings))
    return declared + airflow.celery_workers(settings)


def supervised_programs(settings: Settings, with_airflow: bool) -> list[Program]:
    """Return the stack's programs as its supervisord runs them."""
    declared = {program.name: program for program in _declared(settings, with_airflow)}
    return [
        declared.get(name) or Program(name, command)
        for name, command in programs(settings, with_airflow).items()
    ]


def runs_spark_connect(settings: Settings) -> bool:
    """Tell whether the stack keeps a Spark Connect server running."""
    return settings.spark_runner is SparkRunnerMode.CONNECT


def supervisor(settings: Settings) -> Supervisor:
    """Return the stack's supervisord."""
    return Supervisor("", run_directory(settings), log_directory(settings))


def supervisor_config(settings: Settings, with_airflow: bool) -> str:
    """Render supervisord's configuration for the stack."""
    return supervisor(settings).config(supervised_programs(settings, with_airflow))


def supervisor_running(settings: Settings) -> bool:
    """Tell whether the stack's supervisord answers."""
    return supervisor(settings).running()


def _environment(settings: Settings, with_airflow: bool) -> dict[str, str]:
    environment = dict(os.environ)
    if with_airflow:
        environment |= airflow.airflow_environment(settings)
    else:
        environment |= settings.environment()
    if runs_spark_connect(settings):
        environment |= spark_connect.environment()
    return environment


def prepare_airflow(settings: Settings) -> None:
    """Create Airflow's metadata database and its own role if tripflow manages the server,
    then migrate it."""
    if airflow.owns_metadata_role(settings):
        roles.ensure_owned_database(
            ManagedPostgres(settings).url(), roles.AIRFLOW_LOGIN, airflow.METADATA_DATABASE
        )
    airflow.write_passwords_file(settings)
    result = subprocess.run(
        [venv_bin("airflow"), "db", "migrate"],
        env=_environment(settings, True),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(f"airflow db migrate failed:\n{result.stderr.strip()[-2000:]}")


def start_supervisor(settings: Settings, with_airflow: bool) -> None:
    """Start supervisord with the stack's programs, or start a running one again."""
    stack = supervisor(settings)
    # Programs inherit supervisord's environment, which the configuration does not show: a
    # stack started again always gets a new supervisord.
    stack.stop(StackError)
    stack.start(
        supervised_programs(settings, with_airflow),
        _environment(settings, with_airflow),
        StackError,
    )


def stop_supervisor(settings: Settings) -> bool:
    """Stop every supervised program and supervisord itself; return False if none ran."""
    return supervisor(settings).stop(StackError)


def api_healthy(settings: Settings) -> bool:
    """Tell whether tripflow's API answers its health check."""
    return http_get_json(f"http://{settings.api_host}:{settings.api_port}/health")[0] == 200


def airflow_healthy(settings: Settings) -> bool:
    """Tell whether Airflow's metadata DB, scheduler, triggerer and dag-processor are healthy."""
    status, body = http_get_json(f"http://127.0.0.1:{settings.airflow_port}/api/v2/monitor/health")
    if status != 200 or not isinstance(body, dict):
        return False
    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return all(body.get(part, {}).get("status") == "healthy" for part in parts)


def airflow_token(settings: Settings) -> str:
    """Log in to Airflow's REST API; return a bearer token."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.airflow_port}/auth/token",
        data=json.dumps(
            {"username": settings.airflow_username, "password": settings.airflow_password}
        ).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["access_token"])


def unpause_dag(settings: Settings, timeout: float = 120) -> None:
    """Unpause the DAG once the dag-processor has parsed it."""
    token = airflow_token(settings)
    url = f"http://127.0.0.1:{settings.airflow_port}/api/v2/dags/{airflow.DAG_ID}"

    def unpaused() -> bool:
        request = urllib.request.Request(
            url,
            data=json.dumps({"is_paused": False}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            method="PATCH",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError as error:
            if error.code == 404:  # not parsed yet
                return False
            raise

    wait_for(unpaused, timeout, f"the DAG {airflow.DAG_ID} to be parsed")


class SideService(Protocol):
    """A part that runs under a supervisord of its own (the lake's servers, the Spark
    cluster), so it can be up while the stack is down."""

    name: str

    def start(self, timeout: float = ...) -> float:
        """Start it and wait until it answers; return the seconds it took."""

    def stop(self) -> bool:
        """Stop it; return False if it was not running."""

    def status(self) -> list[ServiceState]:
        """Return the state of each of its programs."""


# The supervisords of the side services, in the order they stop (users before what they use).
SIDE_SUPERVISORS = ("spark", "s3", "kafka", "hdfs")


def side_services(settings: Settings) -> list[SideService]:
    """Return the side services the settings ask tripflow to run, in the order they start."""
    found: list[SideService] = []
    if settings.manages_kafka:
        from tripflow.services.kafka import ManagedKafka

        # First: the S3 server sends its events there and refuses to start without it.
        found.append(ManagedKafka(settings))
    if settings.manages_s3:
        from tripflow.services.s3 import ManagedS3

        found.append(ManagedS3(settings, events=settings.events))
    if settings.manages_hdfs:
        from tripflow.services.hdfs import ManagedHdfs

        found.append(ManagedHdfs(settings))
    if settings.manages_spark_cluster:
        from tripflow.services.spark_cluster import SparkCluster

        found.append(SparkCluster(settings))
    return found


def down(settings: Settings) -> list[str]:
    """Stop the stack's programs, then every side service running under the home (whatever
    the settings say now); return what was stopped."""
    stopped = ["services"] if stop_supervisor(settings) else []
    for name in SIDE_SUPERVISORS:
        if Supervisor(name, run_directory(settings), log_directory(settings)).stop(StackError):
            stopped.append(name)
    return stopped


def up(settings: Settings, with_airflow: bool = True, timeout: float = 180) -> dict[str, float]:
    """Start the whole local stack and return when every part answers its health check:
    the seconds each part took to answer (side services on their own, the stack's parts
    from the start of its supervisord)."""
    took: dict[str, float] = {}
    for service in side_services(settings):
        took[service.name] = service.start(timeout)
    if with_airflow:
        prepare_airflow(settings)
    if with_airflow and settings.manages_redis:
        from tripflow.services import redis

        redis.directory(settings).mkdir(parents=True, exist_ok=True)
    start_supervisor(settings, with_airflow)
    started = time.monotonic()
    wait_for(lambda: api_healthy(settings), timeout, "the API's /health")
    took["api"] = time.monotonic() - started
    if runs_spark_connect(settings):
        wait_for(
            lambda: spark_connect.healthy(settings),
            timeout,
            f"the Spark Connect server on {spark_connect.url(settings)}",
        )
        took["spark-connect"] = time.monotonic() - started
        from tripflow import pipeline

        # Before the DAG listens: the first file then finds the server's job compiled.
        pipeline.warm_up(
            pipeline.ConnectRunner(spark_connect.url(settings)),
            run_directory(settings) / "spark-warm-up",
        )
    if with_airflow and settings.manages_redis:
        from tripflow.services import redis

        supervisor(settings).wait_healthy(
            lambda: redis.healthy(settings),
            timeout,
            f"Redis on {redis.url(settings)}",
            [redis.PROGRAM],
            StackError,
        )
        took["redis"] = time.monotonic() - started
    if with_airflow:
        wait_for(lambda: airflow_healthy(settings), timeout, "Airflow's health check")
        took["airflow"] = time.monotonic() - started
        # Airflow's health check leaves the Celery workers out; a ping each answers through
        # the broker shows it is connected and consuming, as a task needs (supervisord's
        # RUNNING only says it lived three seconds).
        workers = airflow.celery_workers(settings)
        if workers:
            supervisor(settings).wait_healthy(
                lambda: airflow.celery_workers_healthy(settings),
                timeout,
                f"{len(workers)} Celery workers to answer a ping",
                [worker.name for worker in workers],
                StackError,
            )
            took["celery-workers"] = time.monotonic() - started
        unpause_dag(settings, timeout)
    return took


def services(settings: Settings) -> list[ServiceState]:
    """Return the state of PostgreSQL and of every supervised program."""
    states = []
    if settings.manages_database:
        cluster = ManagedPostgres(settings)
        pid_file = cluster.data / "postmaster.pid"
        running = cluster.running()
        pid = int(pid_file.read_text().split()[0]) if running and pid_file.exists() else None
        states.append(
            ServiceState(
                "postgresql",
                "RUNNING" if running else "STOPPED",
                pid,
                tree_memory_mb(pid) if pid else None,
                f"127.0.0.1:{cluster.port}",
            )
        )
    if supervisor_running(settings):
        states += supervisor(settings).states(lambda info: _detail(settings, info))
    for service in side_services(settings):
        states += service.status()
    return states


def _detail(settings: Settings, info: dict[str, Any]) -> str:
    # supervisord describes a running program as "pid N, uptime H:MM:SS".
    detail = str(info["description"]).split(", ", 1)[-1]
    if info["name"] == spark_connect.PROGRAM and info["statename"] == "RUNNING":
        address = spark_connect.url(settings)
        found = spark_connect.version(address)
        answer = f"Spark {found}" if found else "not answering yet"
        detail = f"{address} ({answer}), {detail}"
    return detail
