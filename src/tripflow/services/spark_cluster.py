"""A Spark standalone cluster on loopback: one master and `spark_workers` workers, from the
pyspark wheel's own jars (`bin/spark-class`; the wheel has no start-master.sh).

A declaration: the programs, the health check (the master's JSON page lists its alive
workers) and the settings it reads (`spark_master`, `spark_master_webui_port`,
`spark_workers`, `spark_worker_cores`, `spark_worker_memory`). It runs under a supervisord of
its own, apart from the stack's, when TRIPFLOW_SPARK_MASTER is a spark:// URL on loopback;
jobs reach it by spark-submit (or the Connect server) with that master."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tripflow.services.supervisor import (
    Program,
    ServiceError,
    ServiceState,
    Supervisor,
    http_get_json,
)
from tripflow.spark.session import spark_home

if TYPE_CHECKING:
    from tripflow.config import Settings

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
MASTER = "spark-master"


class SparkClusterError(ServiceError):
    """The Spark standalone cluster did not start or stop."""


def worker_name(number: int) -> str:
    """Return the program name of a worker (numbered from 1)."""
    return f"spark-worker-{number}"


class SparkCluster:
    """A master on the host and port of `spark_master` and its workers, their work
    directories under `<home>/spark`."""

    name = "spark-cluster"

    def __init__(self, settings: Settings) -> None:
        parts = urlsplit(settings.spark_master)
        if parts.scheme != "spark":
            raise SparkClusterError(
                f"TRIPFLOW_SPARK_MASTER is {settings.spark_master!r}: a standalone cluster "
                "needs spark://host:port"
            )
        self.settings = settings
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 7077
        self.directory = settings.home_dir / "spark"
        self.supervisor = Supervisor("spark", settings.home_dir / "run", settings.home_dir / "logs")

    @property
    def master_url(self) -> str:
        """Return the master's spark:// URL."""
        return f"spark://{self.host}:{self.port}"

    @property
    def webui_url(self) -> str:
        """Return the master's web UI (its /json/ page is the health check)."""
        return f"http://{self.host}:{self.settings.spark_master_webui_port}"

    def _spark_class(self, *arguments: str) -> list[str]:
        return [str(spark_home() / "bin" / "spark-class"), *arguments]

    def programs(self) -> list[Program]:
        """Return the master, then the workers (which retry until the master answers)."""
        environment = {
            "SPARK_LOCAL_IP": self.host,
            # Each daemon's heap: small, the executors get their own JVMs.
            "SPARK_DAEMON_MEMORY": "256m",
            "SPARK_LOG_DIR": str(self.settings.home_dir / "logs"),
        }
        programs = [
            Program(
                MASTER,
                self._spark_class(
                    MASTER_CLASS,
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                    # Its default, 8080, is Airflow's.
                    "--webui-port",
                    str(self.settings.spark_master_webui_port),
                ),
                environment=environment,
                priority=1,
            )
        ]
        for number in range(1, self.settings.spark_workers + 1):
            name = worker_name(number)
            work = self.directory / name
            programs.append(
                Program(
                    name,
                    self._spark_class(
                        WORKER_CLASS,
                        "--host",
                        self.host,
                        # 0: a free port each, for the worker and its web UI.
                        "--port",
                        "0",
                        "--webui-port",
                        "0",
                        "--cores",
                        str(self.settings.spark_worker_cores),
                        "--memory",
                        self.settings.spark_worker_memory,
                        "--work-dir",
                        str(work),
                        self.master_url,
                    ),
                    environment=environment,
                    priority=2,
                )
            )
        return programs

    def alive_workers(self) -> int:
        """Return how many workers the master counts as alive (0 when it does not answer)."""
        status, body = http_get_json(f"{self.webui_url}/json/")
        if status != 200 or not isinstance(body, dict) or body.get("status") != "ALIVE":
            return 0
        return int(body.get("aliveworkers", 0))

    def healthy(self) -> bool:
        """Tell whether the master is alive with every worker registered."""
        return self.alive_workers() >= self.settings.spark_workers

    def start(self, timeout: float = 120) -> float:
        """Start the master and the workers (if not running as configured) and wait until
        every worker has registered; return the seconds it took."""
        started = time.monotonic()
        for number in range(1, self.settings.spark_workers + 1):
            (self.directory / worker_name(number)).mkdir(parents=True, exist_ok=True)
        self.supervisor.start(self.programs(), dict(os.environ), SparkClusterError)
        self.supervisor.wait_healthy(
            self.healthy,
            timeout,
            f"the Spark master {self.master_url} with {self.settings.spark_workers} workers",
            [MASTER, *(worker_name(n) for n in range(1, self.settings.spark_workers + 1))],
            SparkClusterError,
        )
        return time.monotonic() - started

    def stop(self) -> bool:
        """Stop the workers and the master; return False if none ran."""
        return self.supervisor.stop(SparkClusterError)

    def status(self) -> list[ServiceState]:
        """Return the state of the master and of each worker."""
        names = [MASTER, *(worker_name(n) for n in range(1, self.settings.spark_workers + 1))]

        def detail(info: dict[str, object]) -> str:
            if info["name"] == MASTER:
                return f"{self.master_url} (UI {self.webui_url}, {self.alive_workers()} alive)"
            return ""

        return self.supervisor.states(detail, names)
