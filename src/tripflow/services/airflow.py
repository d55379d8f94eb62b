"""Airflow's configuration for the local stack, derived from tripflow's settings.

Every Airflow process (api-server, scheduler, dag-processor, triggerer, and the tasks they
run) gets the same environment from `airflow_environment`, so the stack is configured in
one place and nothing is kept in a hand-edited airflow.cfg."""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tripflow.config import Settings

DAG_ID = "tripdata-process"
DAGS_FOLDER = Path(__file__).resolve().parents[3] / "dags"
METADATA_DATABASE = "airflow"


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
        "SPARK_LOCAL_IP": "127.0.0.1",
        # spark-submit reads the driver's memory from here when neither --driver-memory
        # nor spark.driver.memory is given, as in the DAG's SparkSubmitOperator.
        "SPARK_DRIVER_MEMORY": settings.driver_memory,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    return environment
