"""The warm Spark: a Spark Connect server that the stack's supervisor keeps running, so a batch
pays no JVM start (a cold spark-submit of the 100-row sample spends most of its time there).

A declaration: the program and its environment, its health check and the settings it reads
(`spark_master`, `spark_driver_memory`, `spark_connect_port`, and `lake_url` / `s3a_jars`:
an s3:// lake puts Hadoop's S3A jars on its classpath). The stack runs it when
TRIPFLOW_SPARK_RUNNER is `connect`. PySpark 4.2 ships the server (spark-connect_2.13 jar in
its jars/); the Connect client is loaded only when a server is listening."""

from __future__ import annotations

import socket
import uuid
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tripflow.spark.session import (
    APPLICATION_CONF,
    SQL_CONF,
    local_environment,
    quiet_connect,
    s3a_jars,
    spark_home,
)

if TYPE_CHECKING:
    from tripflow.config import Settings

PROGRAM = "spark-connect"
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
DEFAULT_PORT = 15002
# The user the health check names; Connect keeps sessions apart by user and session id.
HEALTH_USER = "tripflow-health"


def url(settings: Settings) -> str:
    """Return the `sc://` URL of the stack's Connect server."""
    return f"sc://127.0.0.1:{settings.spark_connect_port}"


def command(settings: Settings) -> list[str]:
    """Return the command that runs the server in the foreground (as supervisord wants it)."""
    conf = {
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(settings.spark_connect_port),
        **APPLICATION_CONF,
        # Defaults of every session the server opens; the client sets them again on its own.
        **SQL_CONF,
        # The server would log every stage and task at INFO, in a log that never rotates out
        # of the stack's way otherwise; warnings and errors remain.
        "spark.log.level": "WARN",
    }
    arguments = [
        str(spark_home() / "bin" / "spark-submit"),
        "--class",
        SERVER_CLASS,
        "--name",
        "tripflow-spark-connect",
        "--master",
        settings.spark_master,
        "--driver-memory",
        settings.driver_memory,
    ]
    if settings.executor_memory is not None:
        # On a cluster the server's application keeps executors on the workers.
        arguments += ["--executor-memory", settings.executor_memory]
    for key, value in conf.items():
        arguments += ["--conf", f"{key}={value}"]
    if urlsplit(settings.lake_root).scheme in ("s3", "s3a"):
        # Each job sets the lake's endpoint and keys on its own session; the classes must be
        # on the server's classpath from the start.
        arguments += ["--jars", ",".join(s3a_jars(settings.s3a_jars))]
    return arguments


def environment() -> dict[str, str]:
    """Return the variables the server's JVM must start with (loopback, this Python)."""
    return local_environment()


def version(address: str, timeout: float = 10.0) -> str | None:
    """Return the Spark version a Connect server at `sc://host:port` reports, or None when
    nothing answers there."""
    parts = urlsplit(address)
    host, port = parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORT
    # Nothing listening: say so at once, without loading the Connect client (~2 s).
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return None
    import grpc

    with quiet_connect():
        from pyspark.sql.connect import proto

    # A real request, not just an open port: a fresh session asks for the version, then is
    # released at once so health checks leave no sessions behind on the server.
    session_id = str(uuid.uuid4())
    user = proto.UserContext(user_id=HEALTH_USER)
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        stub = proto.SparkConnectServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            reply = stub.AnalyzePlan(
                proto.AnalyzePlanRequest(
                    session_id=session_id,
                    user_context=user,
                    spark_version=proto.AnalyzePlanRequest.SparkVersion(),
                ),
                timeout=timeout,
            )
            stub.ReleaseSession(
                proto.ReleaseSessionRequest(session_id=session_id, user_context=user),
                timeout=timeout,
            )
        except grpc.RpcError:
            return None
    return str(reply.spark_version.version)


def healthy(settings: Settings) -> bool:
    """Tell whether the stack's Connect server answers a request."""
    return version(url(settings)) is not None
