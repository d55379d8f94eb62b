"""The local stack under one supervisor: Airflow's four services, the API and the warm Spark
(a Spark Connect server, when TRIPFLOW_SPARK_RUNNER is connect).

supervisord (a well-kept process supervisor) starts, restarts and stops the long-running
processes; PostgreSQL runs beside it under pg_ctl, which supervises itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from supervisor.xmlrpc import SupervisorTransport
from tenacity import RetryError, retry, retry_if_result, stop_after_delay, wait_fixed

from tripflow.config import Settings, SparkRunnerMode
from tripflow.services import airflow, spark_connect
from tripflow.services.postgres import ManagedPostgres
from tripflow.warehouse import roles

AIRFLOW_PROGRAMS = (
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)


class StackError(RuntimeError):
    """A service of the stack did not start or answer."""


@dataclass(frozen=True)
class ServiceState:
    """One service as `status` shows it."""

    name: str
    state: str
    pid: int | None
    memory_mb: float | None
    detail: str = ""


def venv_bin(name: str) -> str:
    """Return the path of a command installed in this Python environment."""
    return str(Path(sys.executable).parent / name)


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
    return commands


def runs_spark_connect(settings: Settings) -> bool:
    """Tell whether the stack keeps a Spark Connect server running."""
    return settings.spark_runner is SparkRunnerMode.CONNECT


def supervisor_config(settings: Settings, with_airflow: bool) -> str:
    """Render supervisord's configuration for the stack."""
    run, logs = run_directory(settings), log_directory(settings)
    sections = [
        f"[unix_http_server]\nfile={run / 'supervisor.sock'}\nchmod=0700\n",
        f"[supervisord]\nlogfile={logs / 'supervisord.log'}\npidfile={run / 'supervisord.pid'}\n"
        f"childlogdir={logs}\n",
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
        f"[supervisorctl]\nserverurl=unix://{run / 'supervisor.sock'}\n",
    ]
    for name, command in programs(settings, with_airflow).items():
        # stopasgroup/killasgroup: Airflow and gunicorn fork workers that must go with them.
        # process_group: and those of a predecessor killed outright go before it restarts.
        guarded = [
            venv_bin("python"),
            "-m",
            "tripflow.services.process_group",
            str(run / f"{name}.group"),
            "--",
            *command,
        ]
        sections.append(
            f"[program:{name}]\ncommand={' '.join(guarded)}\nautorestart=true\nstartsecs=3\n"
            "stopasgroup=true\nkillasgroup=true\nstopwaitsecs=20\nredirect_stderr=true\n"
            f"stdout_logfile={logs / (name + '.log')}\nstdout_logfile_maxbytes=20MB\n"
        )
    return "\n".join(sections).replace("%", "%%")


def supervisor_call(socket: Path, method: str) -> Any:
    """Call one method of a supervisord's XML-RPC interface over its unix socket."""
    transport = SupervisorTransport(None, None, f"unix://{socket}")
    try:
        proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
        return getattr(proxy.supervisor, method)()
    finally:
        # The transport keeps its socket open for a next call that never comes.
        transport.close()


def _rpc(settings: Settings, method: str) -> Any:
    return supervisor_call(run_directory(settings) / "supervisor.sock", method)


def supervisor_running(settings: Settings) -> bool:
    """Tell whether the stack's supervisord answers."""
    try:
        return bool(_rpc(settings, "getState")["statename"] == "RUNNING")
    except (OSError, xmlrpc.client.Fault):
        return False


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
    """Start supervisord with the stack's programs, or bring a running one up to date."""
    run_directory(settings).mkdir(parents=True, exist_ok=True)
    log_directory(settings).mkdir(parents=True, exist_ok=True)
    config = run_directory(settings) / "supervisord.conf"
    config.write_text(supervisor_config(settings, with_airflow))
    if supervisor_running(settings):
        # Programs inherit supervisord's environment: a changed stack needs a new supervisord.
        stop_supervisor(settings)
    result = subprocess.run(
        [venv_bin("supervisord"), "-c", str(config)],
        env=_environment(settings, with_airflow),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(f"supervisord did not start: {result.stderr.strip()}")
    wait_for(lambda: supervisor_running(settings), 20, "supervisord")


def stop_supervisor(settings: Settings) -> bool:
    """Stop every supervised program and supervisord itself; return False if none ran."""
    if not supervisor_running(settings):
        return False
    pid_file = run_directory(settings) / "supervisord.pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    _rpc(settings, "shutdown")
    if pid is not None:
        wait_for(lambda: not psutil.pid_exists(pid), 60, "supervisord to stop")
    return True


def wait_for(check: Any, seconds: float, what: str, error: type[Exception] = StackError) -> None:
    """Call `check` every half second until it is true; raise `error` after `seconds`."""

    @retry(
        stop=stop_after_delay(seconds),
        wait=wait_fixed(0.5),
        retry=retry_if_result(lambda ok: not ok),
    )
    def attempt() -> bool:
        return bool(check())

    try:
        attempt()
    except RetryError as timeout:
        raise error(f"timed out after {seconds:.0f} s waiting for {what}") from timeout


def http_get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """GET a JSON document: (status, body), or (0, None) when nothing answers."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, None
    except (OSError, ValueError):
        return 0, None


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


def up(settings: Settings, with_airflow: bool = True, timeout: float = 180) -> None:
    """Start the whole local stack and return when every part answers its health check."""
    if settings.manages_hdfs:
        from tripflow.services.hdfs import ManagedHdfs

        ManagedHdfs(settings).start(timeout)
    if with_airflow:
        prepare_airflow(settings)
    start_supervisor(settings, with_airflow)
    wait_for(lambda: api_healthy(settings), timeout, "the API's /health")
    if runs_spark_connect(settings):
        wait_for(
            lambda: spark_connect.healthy(settings),
            timeout,
            f"the Spark Connect server on {spark_connect.url(settings)}",
        )
        from tripflow import pipeline

        # Before the DAG listens: the first file then finds the server's job compiled.
        pipeline.warm_up(
            pipeline.ConnectRunner(spark_connect.url(settings)),
            run_directory(settings) / "spark-warm-up",
        )
    if with_airflow:
        wait_for(lambda: airflow_healthy(settings), timeout, "Airflow's health check")
        unpause_dag(settings, timeout)


def tree_memory_mb(pid: int) -> float | None:
    """Return the memory (PSS) of a process and its descendants, in MiB."""
    try:
        process = psutil.Process(pid)
        tree = [process, *process.children(recursive=True)]
        # PSS shares each page among the processes mapping it: summed over a tree (a
        # postmaster and its backends, gunicorn and its workers) it does not count twice.
        return float(sum(item.memory_full_info().pss for item in tree)) / 2**20
    except psutil.Error:
        return None


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
        states += supervised_services(
            run_directory(settings) / "supervisor.sock", lambda info: _detail(settings, info)
        )
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


def supervised_services(
    socket: Path, detail: Callable[[dict[str, Any]], str]
) -> list[ServiceState]:
    """Return the state of every program of the supervisord listening on a socket."""
    states = []
    for info in supervisor_call(socket, "getAllProcessInfo"):
        pid = info["pid"] or None
        states.append(
            ServiceState(
                info["name"],
                info["statename"],
                pid,
                tree_memory_mb(pid) if pid else None,
                detail(info),
            )
        )
    return states
