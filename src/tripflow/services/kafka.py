"""The durable queue of the lake's bucket events: a single-node Kafka (one JVM, broker and
KRaft controller) run from the jars scripts/fetch-kafka.sh caches.

A declaration: its program, its health check (a client lists the topic) and the settings it
reads (`events_url`: host, port and topic; `kafka_controller_port`, `kafka_heap`,
`kafka_jars`). It runs under a supervisord of its own, apart from the stack's, and starts
before the S3 server, which refuses to start without the topic. Kafka keeps a message until
its retention ends whether anyone listens or not: an upload made while Airflow's triggerer
is down is still there when it comes back (Redis pub/sub would have dropped it)."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from tripflow.services.supervisor import Program, ServiceError, ServiceState, Supervisor

if TYPE_CHECKING:
    from tripflow.config import Settings

KAFKA_VERSION = "4.1.2"
PROGRAM = "kafka"
SERVER_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
# A small JVM: a broker for a few messages a minute needs little heap or compiled code.
JVM_OPTIONS = (
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:ReservedCodeCacheSize=48m",
    "-Djava.net.preferIPv4Stack=true",
)
# Kafka's logging to stderr (supervisord files it); configuration dumps and per-partition
# state changes left out.
LOG4J2_PROPERTIES = """\
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{ISO8601} %p %c{1}: %m%n
rootLogger.level = INFO
rootLogger.appenderRef.stderr.ref = STDERR
logger.state.name = state.change.logger
logger.state.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
"""


def new_cluster_id() -> str:
    """Return a new KRaft cluster id: 16 random bytes in unpadded URL-safe base64."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # One id in 64 starts with "-", which the storage tool's parser reads as an option
        # ("--cluster-id: expected one argument"); Kafka's own ids skip those too.
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaError(ServiceError):
    """The Kafka broker could not be found, formatted, started or stopped."""


def default_jars_directory() -> Path:
    """Return where scripts/fetch-kafka.sh puts the Kafka jars by default."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tripflow" / f"kafka-{KAFKA_VERSION}" / "jars"


class ManagedKafka:
    """A broker and controller on loopback, its log under `<home>/kafka`."""

    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        if settings.events is None:
            raise KafkaError("TRIPFLOW_EVENTS_URL is not set: there is no Kafka to run")
        self.settings = settings
        self.bootstrap, self.topic = settings.events
        host, _, port = self.bootstrap.rpartition(":")
        self.host, self.port = host, int(port)
        self.directory = settings.home_dir / "kafka"
        self.data = self.directory / "data"
        self.jars = (settings.kafka_jars or default_jars_directory()).expanduser()
        self.supervisor = Supervisor("kafka", settings.home_dir / "run", settings.home_dir / "logs")

    def server_properties(self) -> dict[str, str]:
        """Return the broker's configuration: one node, every internal topic with one replica,
        and buffers sized for a trickle of messages."""
        controller = f"127.0.0.1:{self.settings.kafka_controller_port}"
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "controller.quorum.bootstrap.servers": controller,
            "log.dirs": str(self.data),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "1",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            # Its default takes 128 MB of heap for compaction nobody here needs.
            "log.cleaner.dedupe.buffer.size": str(8 * 2**20),
            # A consumer group's position is kept a month (default: 7 days), so a triggerer
            # down for a week still resumes where it stopped.
            "offsets.retention.minutes": str(30 * 24 * 60),
        }

    def write_config(self) -> None:
        """Write server.properties and log4j2.properties under `<home>/kafka`."""
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}={value}" for key, value in self.server_properties().items()]
        (self.directory / "server.properties").write_text("\n".join(lines) + "\n")
        (self.directory / "log4j2.properties").write_text(LOG4J2_PROPERTIES)

    def java_command(self, main_class: str, *arguments: str) -> list[str]:
        """Return the command line that runs a Kafka class with this broker's logging."""
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java:
            raise KafkaError("java not found: install a JRE 17 (run `make setup`)")
        if not (self.jars / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
            raise KafkaError(
                f"Kafka {KAFKA_VERSION} jars not found in {self.jars}: run scripts/fetch-kafka.sh "
                "(or set TRIPFLOW_KAFKA_JARS)"
            )
        return [
            java,
            f"-Xmx{self.settings.kafka_heap}",
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self.directory / 'log4j2.properties'}",
            "-cp",
            f"{self.jars}/*",
            main_class,
            *arguments,
        ]

    @property
    def formatted(self) -> bool:
        """Tell whether the log directory holds a formatted KRaft store."""
        return (self.data / "meta.properties").exists()

    def format(self) -> None:
        """Format the log directory for a new one-node cluster."""
        result = subprocess.run(
            self.java_command(
                STORAGE_TOOL,
                "format",
                "--standalone",
                "--ignore-formatted",
                "--cluster-id",
                new_cluster_id(),
                "--config",
                str(self.directory / "server.properties"),
            ),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0 or not self.formatted:
            raise KafkaError(f"formatting Kafka's storage failed:\n{result.stderr[-2000:]}")

    def programs(self) -> list[Program]:
        """Return the broker's program."""
        return [
            Program(
                PROGRAM,
                self.java_command(SERVER_CLASS, str(self.directory / "server.properties")),
                directory=self.directory,
            )
        ]

    def _admin(self) -> object:
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000})

    def healthy(self) -> bool:
        """Tell whether the broker answers a client (and lists its topics)."""
        from confluent_kafka import KafkaException

        # Nothing listening yet: say so without a client, which would log every refused
        # connection to stderr.
        try:
            socket.create_connection((self.host, self.port), timeout=2).close()
        except OSError:
            return False
        try:
            self._admin().list_topics(timeout=2)  # type: ignore[attr-defined]
        except KafkaException:
            return False
        return True

    def create_topic(self) -> None:
        """Create the events' topic (one partition, one replica) if it is missing."""
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

        admin = self._admin()
        if self.topic in admin.list_topics(timeout=5).topics:  # type: ignore[attr-defined]
            return
        futures = admin.create_topics([NewTopic(self.topic, 1, 1)])  # type: ignore[attr-defined]
        futures[self.topic].result(timeout=30)

    def start(self, timeout: float = 60) -> float:
        """Format on first use, start the broker, wait until it answers and create the
        topic; return the seconds it took."""
        started = time.monotonic()
        self.write_config()
        if not self.formatted:
            self.format()
        self.supervisor.start(self.programs(), dict(os.environ), KafkaError)
        self.supervisor.wait_healthy(
            self.healthy, timeout, f"Kafka on {self.bootstrap}", [PROGRAM], KafkaError
        )
        self.create_topic()
        return time.monotonic() - started

    def stop(self) -> bool:
        """Stop the broker; return False if it was not running."""
        return self.supervisor.stop(KafkaError)

    def status(self) -> list[ServiceState]:
        """Return the state of the broker."""
        detail = f"{self.bootstrap} (topic {self.topic})"
        return self.supervisor.states(lambda info: detail, [PROGRAM])
