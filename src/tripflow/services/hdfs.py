"""A single-node HDFS (one NameNode, one DataNode) run from the Apache Hadoop jars.

The jars come from `scripts/fetch-hadoop.sh`; configuration, metadata, blocks and logs live
under `<home>/hdfs`. Both daemons run under a supervisord of their own (socket and config in
`<home>/run`), apart from the stack's, so the lake can be up while the stack is down."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from tripflow.services.supervisor import (
    Program,
    ServiceError,
    ServiceState,
    Supervisor,
    http_get_json,
)

if TYPE_CHECKING:
    from tripflow.config import Settings

HADOOP_VERSION = "3.5.0"
NAMENODE_CLASS = "org.apache.hadoop.hdfs.server.namenode.NameNode"
DATANODE_CLASS = "org.apache.hadoop.hdfs.server.datanode.DataNode"
PROGRAMS = ("namenode", "datanode")
_STATE_BEAN = "Hadoop:service=NameNode,name=FSNamesystemState"

# Hadoop's own logging, to stderr so supervisord files it per daemon. Per-operation chatter
# (every block allocated, every audit line) is left out.
LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO,console
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.target=System.err
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%d{ISO8601} %p %c{2}: %m%n
log4j.logger.org.apache.hadoop.hdfs.StateChange=WARN
log4j.logger.BlockStateChange=WARN
log4j.logger.org.apache.hadoop.hdfs.server.namenode.FSNamesystem.audit=WARN
log4j.logger.org.apache.hadoop.hdfs.server.datanode.DataNode.clienttrace=WARN
log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR
"""


class HdfsError(ServiceError):
    """The managed HDFS could not be fetched, formatted, started or stopped."""


def default_jars_directory() -> Path:
    """Return where scripts/fetch-hadoop.sh puts the Hadoop jars by default."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tripflow" / f"hadoop-{HADOOP_VERSION}" / "jars"


def render_site(properties: dict[str, str]) -> str:
    """Render a Hadoop `*-site.xml` file."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<configuration>"]
    for name, value in properties.items():
        lines.append(
            f"  <property><name>{escape(name)}</name><value>{escape(value)}</value></property>"
        )
    lines.append("</configuration>")
    return "\n".join(lines) + "\n"


class ManagedHdfs:
    """A NameNode and a DataNode on loopback, with their state under `<home>/hdfs`."""

    name = "hdfs"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.directory = settings.home_dir / "hdfs"
        self.conf = self.directory / "conf"
        self.name_directory = self.directory / "name"
        self.data_directory = self.directory / "data"
        self.jars = (settings.hadoop_jars or default_jars_directory()).expanduser().resolve()
        self.run_directory = settings.home_dir / "run"
        self.log_directory = settings.home_dir / "logs"
        self.supervisor = Supervisor(
            "hdfs", self.run_directory, self.log_directory, log_prefix="hdfs-"
        )
        self.port = settings.hdfs_port
        self.http_port = settings.hdfs_http_port
        self.user = settings.hdfs_user

    def url(self, path: str = "") -> str:
        """Return the hdfs:// URL of a path, as Spark and the lake take it."""
        return f"hdfs://127.0.0.1:{self.port}/{path.lstrip('/')}".rstrip("/")

    def webhdfs_url(self) -> str:
        """Return the base URL of the NameNode's HTTP server (WebHDFS, JMX)."""
        return f"http://127.0.0.1:{self.http_port}"

    def core_site(self) -> dict[str, str]:
        """Return the properties of core-site.xml."""
        return {
            "fs.defaultFS": self.url(),
            "hadoop.tmp.dir": str(self.directory / "tmp"),
            "hadoop.security.authentication": "simple",
            # The user the web UI acts as when a request names none.
            "hadoop.http.staticuser.user": self.user,
        }

    def hdfs_site(self) -> dict[str, str]:
        """Return the properties of hdfs-site.xml."""
        s = self.settings
        return {
            "dfs.namenode.rpc-address": f"127.0.0.1:{self.port}",
            "dfs.namenode.http-address": f"127.0.0.1:{self.http_port}",
            "dfs.namenode.name.dir": self.name_directory.as_uri(),
            "dfs.datanode.data.dir": self.data_directory.as_uri(),
            "dfs.datanode.address": f"127.0.0.1:{s.hdfs_datanode_port}",
            "dfs.datanode.http.address": f"127.0.0.1:{s.hdfs_datanode_http_port}",
            "dfs.datanode.ipc.address": f"127.0.0.1:{s.hdfs_datanode_ipc_port}",
            # WebHDFS redirects every data read and write to the DataNode by the name it
            # registered with: pin it to loopback, not whatever the machine's hostname is.
            "dfs.datanode.hostname": "127.0.0.1",
            "dfs.namenode.datanode.registration.ip-hostname-check": "false",
            "dfs.replication": "1",
            "dfs.webhdfs.enabled": "true",
            "dfs.permissions.enabled": "false",
            # One DataNode holds every block: once it has reported there is nothing to wait
            # for, so leave safe mode at once instead of after the default 30 s.
            "dfs.namenode.safemode.extension": "0",
        }

    def write_config(self) -> None:
        """Write core-site.xml, hdfs-site.xml and log4j.properties from the settings."""
        self.conf.mkdir(parents=True, exist_ok=True)
        (self.conf / "core-site.xml").write_text(render_site(self.core_site()))
        (self.conf / "hdfs-site.xml").write_text(render_site(self.hdfs_site()))
        (self.conf / "log4j.properties").write_text(LOG4J_PROPERTIES)

    def _check_jars(self) -> None:
        if not (self.jars / f"hadoop-hdfs-{HADOOP_VERSION}.jar").exists():
            raise HdfsError(
                f"Hadoop {HADOOP_VERSION} jars not found in {self.jars}: "
                "run scripts/fetch-hadoop.sh (or set TRIPFLOW_HADOOP_JARS)"
            )

    def java_command(self, main_class: str, *arguments: str) -> list[str]:
        """Return the command line that runs a Hadoop class with this HDFS's configuration."""
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java:
            raise HdfsError("java not found: install a JRE 17 (run `make setup`)")
        return [
            java,
            f"-Xmx{self.settings.hdfs_heap}",
            # The serial collector keeps a small daemon's footprint small.
            "-XX:+UseSerialGC",
            "-Djava.net.preferIPv4Stack=true",
            # Silences the check for a Hadoop installation: the jars are all there is.
            f"-Dhadoop.home.dir={self.directory}",
            f"-Dhadoop.log.dir={self.log_directory}",
            # The configuration first, so it wins over any default inside a jar; the jars
            # directory itself holds the webapps/ tree the HTTP servers look up.
            "-cp",
            f"{self.conf}:{self.jars}/*:{self.jars}",
            main_class,
            *arguments,
        ]

    def _environment(self) -> dict[str, str]:
        # Simple authentication takes the user from here: the daemons (hence the HDFS
        # superuser) are `hdfs_user`, not the login user (often root).
        return {**os.environ, "HADOOP_USER_NAME": self.user}

    @property
    def formatted(self) -> bool:
        """Tell whether the NameNode's metadata directory has been formatted."""
        return (self.name_directory / "current" / "VERSION").exists()

    def format(self) -> None:
        """Format a new, empty namespace; blocks of an older one are discarded."""
        self._check_jars()
        self.write_config()
        # A DataNode directory from another namespace has another cluster id: the DataNode
        # would refuse to join.
        shutil.rmtree(self.data_directory, ignore_errors=True)
        result = subprocess.run(
            self.java_command(
                NAMENODE_CLASS, "-format", "-force", "-nonInteractive", "-clusterid", "tripflow"
            ),
            env=self._environment(),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0 or not self.formatted:
            raise HdfsError(f"NameNode -format failed:\n{result.stderr.strip()[-2000:]}")

    def programs(self) -> list[Program]:
        """Return the NameNode and the DataNode, NameNode first (the DataNode retries until
        the NameNode answers)."""
        return [
            Program(
                name,
                self.java_command(main_class),
                environment={"HADOOP_USER_NAME": self.user},
                directory=self.directory,
                priority=priority,
                stop_seconds=30,
            )
            for priority, (name, main_class) in enumerate(
                (("namenode", NAMENODE_CLASS), ("datanode", DATANODE_CLASS)), start=1
            )
        ]

    def supervisor_running(self) -> bool:
        """Tell whether the HDFS supervisord answers."""
        return self.supervisor.running()

    def namesystem_state(self) -> dict[str, Any] | None:
        """Return the NameNode's FSNamesystemState JMX bean, or None if it does not answer."""
        status, body = http_get_json(f"{self.webhdfs_url()}/jmx?qry={_STATE_BEAN}")
        if status != 200 or not isinstance(body, dict) or not body.get("beans"):
            return None
        return dict(body["beans"][0])

    def healthy(self) -> bool:
        """Tell whether HDFS takes writes: WebHDFS answers, safe mode is off, a DataNode has
        space."""
        status, _ = http_get_json(
            f"{self.webhdfs_url()}/webhdfs/v1/?op=GETFILESTATUS&user.name={self.user}"
        )
        state = self.namesystem_state()
        return (
            status == 200
            and state is not None
            and state.get("FSState") == "Operational"
            and int(state.get("NumLiveDataNodes", 0)) >= 1
            # A DataNode counts as live once registered, but takes blocks only after its
            # first heartbeat has reported its storage.
            and int(state.get("CapacityRemaining", 0)) > 0
        )

    def start(self, timeout: float = 120) -> float:
        """Format on first use, start the NameNode and the DataNode, and wait until HDFS
        takes writes; return the seconds it took."""
        started = time.monotonic()
        self._check_jars()
        if not self.formatted:
            self.format()
        self.write_config()
        self.supervisor.start(self.programs(), self._environment(), HdfsError)
        self.supervisor.wait_healthy(
            self.healthy,
            timeout,
            "HDFS to leave safe mode with a live DataNode",
            PROGRAMS,
            HdfsError,
        )
        return time.monotonic() - started

    def stop(self) -> bool:
        """Stop the DataNode, the NameNode and their supervisord; return False if none ran."""
        return self.supervisor.stop(HdfsError)

    def status(self) -> list[ServiceState]:
        """Return the state of the NameNode and the DataNode."""
        details = {
            "namenode": f"{self.url()} (WebHDFS {self.webhdfs_url()})",
            "datanode": f"127.0.0.1:{self.settings.hdfs_datanode_port}",
        }
        return self.supervisor.states(lambda info: details.get(info["name"], ""), PROGRAMS)
