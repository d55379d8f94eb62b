"""Airflow's configuration for the local stack, derived from tripflow's settings.

Every Airflow process (api-server, scheduler, dag-processor, triggerer, the Celery workers
with the celery executor, and the tasks they run) gets the same environment from
`airflow_environment`, so the stack is configured in one place and nothing is kept in a
hand-edited airflow.cfg. A Celery worker adds a few of its own (its log server's port)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from tripflow.config import AirflowExecutor, Settings
from tripflow.spark.session import local_environment

if TYPE_CHECKING:
    from tripflow.services.supervisor import Program

DAG_ID = "tripdata-process"
DAGS_FOLDER = Path(__file__).resolve().parents[3] / "dags"
METADATA_DATABASE = "airflow"
# The Celery provider's executor. (pyproject keeps Celery below 5.7, which removed a
# decorator the provider 3.26 imports as it loads.)
CELERY_EXECUTOR = "airflow.providers.celery.executors.celery_executor.CeleryExecutor"


def airflow_home(settings: Settings) -> Path:
    """Return Airflow's home under tripflow's."""
    return settings.home_dir / "airflow"


def owns_metadata_role(settings: Settings) -> bool:
    """Tell whether Airflow's metadata database is tripflow's to create, with its own role."""
    return settings.manages_database and not settings.airflow_database_url


def metadata_url(settings: Settings) -> str:
    """Return the SQLAlchemy URL of Airflow's metadata database."""
    if settings.airflow_database_url:
        return settings.airflow_database_url
    url = settings.database_dsn
    if owns_metadata_role(settings):
        # Imported here: the DAG file imports this module, and parsing it connects nothing.
        from tripflow.warehouse import roles

        url = roles.login_url(url, roles.AIRFLOW_LOGIN) or url
    parts = urlsplit(url)
    return urlunsplit(
        ("postgresql+psycopg2", parts.netloc, f"/{METADATA_DATABASE}", parts.query, "")
    )


def _secret(path: Path) -> str:
    # Shared by every component (they sign and check each other's tokens); kept across runs.
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def write_passwords_file(settings: Settings) -> Path:
    """Write the simple auth manager's password file; return its path."""
    path = airflow_home(settings) / "passwords.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({settings.airflow_username: settings.airflow_password}))
    path.chmod(0o600)
    return path


def airflow_environment(settings: Settings) -> dict[str, str]:
    """Return the environment of every Airflow process of the local stack."""
    home = airflow_home(settings)
    api = f"http://127.0.0.1:{settings.airflow_port}"
    bin_dir = str(Path(sys.executable).parent)
    spark_connection = {"conn_type": "spark", "host": settings.spark_master}
    # The stack's Spark Connect server (the DAG's Spark task uses it when the settings ask).
    spark_connect_connection = {
        "conn_type": "spark_connect",
        "host": "127.0.0.1",
        "port": settings.spark_connect_port,
    }
    environment = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Two cores: a few task slots are plenty and keep memory near 1 GB.
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url(settings),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": _secret(home / "jwt_secret"),
        "AIRFLOW__API__SECRET_KEY": _secret(home / "secret_key"),
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow_username}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        # New DAG files and edits show up within seconds, not minutes.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        # After a crash, minutes are the default. A scheduler killed mid-run leaves its
        # running tasks to the next one, which resets them once the dead one's job is stale
        # (scheduler_health_check_threshold, 30 s) at the next orphan check (300 s by
        # default); a task whose supervisor died is failed (then retried) when its heartbeats,
        # sent every 5 s, have stopped for this long (300 s by default).
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "15",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
        # Ends a dead scheduler's transaction that its orphaned workers keep open.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": (
            "tripflow.orchestration.metadata.CONNECT_ARGS"
        ),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        # Fixed by default in Airflow: a second stack on the machine (the tests' next to a
        # developer's) would find them taken.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(settings.airflow_log_server_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(settings.airflow_trigger_log_server_port),
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(spark_connection),
        "AIRFLOW_CONN_SPARK_CONNECT_DEFAULT": json.dumps(spark_connect_connection),
        # Tasks build tripflow's settings from these, exactly as the CLI would.
        **settings.environment(),
        # Airflow spawns `airflow` and the Spark hook `spark-submit`: both live here.
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        # Loopback unless SPARK_LOCAL_IP says otherwise (a driver whose executors run on
        # other hosts, YARN or a remote master, must bind an address they reach), and the
        # project's Python for the workers.
        **local_environment(),
        # spark-submit reads the driver's memory from here when neither --driver-memory
        # nor spark.driver.memory is given, as in the DAG's SparkSubmitOperator.
        "SPARK_DRIVER_MEMORY": settings.driver_memory,
    }
    if settings.events is not None:
        bootstrap, _topic = settings.events
        # The triggerer's watcher consumes the bucket events with it: from the earliest
        # message its group has not committed (one sent while the triggerer was down is
        # still delivered), committing each one itself.
        kafka_connection = {
            "conn_type": "kafka",
            "extra": {
                "bootstrap.servers": bootstrap,
                "group.id": "tripflow-landing-watcher",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": "false",
            },
        }
        environment["AIRFLOW_CONN_KAFKA_DEFAULT"] = json.dumps(kafka_connection)
    if runs_celery(settings):
        environment |= {
            "AIRFLOW__CORE__EXECUTOR": CELERY_EXECUTOR,
            "AIRFLOW__CELERY__BROKER_URL": settings.celery_broker_url,
            # Task states go to the metadata database, which the scheduler reads them from in
            # bulk: no second store to run, and the same database as everything else.
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata_url(settings)}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(settings.celery_worker_concurrency),
            # Airflow's own default, said explicitly: without it every process that loads the
            # Celery configuration logs a warning. A dead worker's task is retried long before,
            # once its heartbeats stop (TASK_INSTANCE_HEARTBEAT_TIMEOUT above).
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
        }
    return environment


def runs_celery(settings: Settings) -> bool:
    """Tell whether the DAG's tasks run on Celery workers."""
    return settings.airflow_executor is AirflowExecutor.CELERY


def celery_node(number: int) -> str:
    """Return the Celery node name of the stack's worker `number` (from 1)."""
    # Celery's own convention, name@host: names stay apart on a broker other machines use.
    return f"worker-{number}@{socket.gethostname()}"


def celery_workers(settings: Settings) -> list[Program]:
    """Return the programs of the stack's Celery workers (none with the local executor)."""
    if not runs_celery(settings):
        return []
    # Imported here: the DAG file imports this module, and task processes need none of it.
    from tripflow.services.supervisor import Program, venv_bin

    workers = []
    for number in range(1, settings.celery_workers + 1):
        command = [
            venv_bin("airflow"),
            "celery",
            "worker",
            "--concurrency",
            str(settings.celery_worker_concurrency),
            "--celery-hostname",
            celery_node(number),
        ]
        # Each worker serves its tasks' logs on a port of its own: two on one machine would
        # both bind the one port of the environment, and the second's log server would die.
        # A range of its own, not the scheduler's and triggerer's ports plus n: those two
        # are next to each other by default (8793, 8794).
        port = settings.celery_log_server_port + number - 1
        workers.append(
            Program(
                f"celery-worker-{number}",
                command,
                environment={
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port),
                    # The DAGs folder is one unversioned bundle: no stale copies pile up on
                    # a worker, and the process that would look for them is one less (~18
                    # MiB of its own).
                    "AIRFLOW__DAG_PROCESSOR__STALE_BUNDLE_CLEANUP_INTERVAL": "0",
                },
            )
        )
    return workers


def celery_workers_healthy(settings: Settings) -> bool:
    """Tell whether every Celery worker of the stack answers a ping through the broker."""
    # Imported here, as above: only the stack's `up` asks.
    from celery import Celery
    from kombu.exceptions import OperationalError

    expected = {celery_node(number) for number in range(1, settings.celery_workers + 1)}
    app = Celery(set_as_current=False, broker=settings.celery_broker_url)
    try:
        replies = app.control.ping(destination=sorted(expected), timeout=1.0)
    except OperationalError:
        return False
    finally:
        app.close()
    return expected <= {node for reply in replies for node in reply}
