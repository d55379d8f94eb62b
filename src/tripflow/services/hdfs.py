"""A single-node HDFS (one NameNode, one DataNode) run from the Apache Hadoop jars.

The jars come from `scripts/fetch-hadoop.sh`; configuration, metadata, blocks and logs live
under `<home>/hdfs`. Both daemons run under a supervisord of their own (socket and config in
`<home>/run`), apart from the stack's, so the lake can be up while the stack is down."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import xmlrpc.client
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

import psutil

from tripflow.services.stack import (
    ServiceState,
    http_get_json,
    supervised_services,
    supervisor_call,
    venv_bin,
    wait_for,
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


class HdfsError(RuntimeError):
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


def _wait_for(check: Any, seconds: float, what: str) -> None:
    wait_for(check, seconds, what, HdfsError)


class ManagedHdfs:
    """A NameNode and a DataNode on loopback, with their state under `<home>/hdfs`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.directory = settings.home_dir / "hdfs"
        self.conf = self.directory / "conf"
        self.name_directory = self.directory / "name"
        self.data_directory = self.directory / "data"
        self.jars = (settings.hadoop_jars or default_jars_directory()).expanduser().resolve()
        self.run_directory = settings.home_dir / "run"
        self.log_directory = settings.home_dir / "logs"
        self.socket = self.run_directory / "hdfs-supervisor.sock"
        self.supervisor_conf = self.run_directory / "hdfs-supervisord.conf"
        self.supervisor_pid = self.run_directory / "hdfs-supervisord.pid"
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

    def supervisor_config(self) -> str:
        """Render the configuration of the HDFS supervisord."""
        sections = [
            f"[unix_http_server]\nfile={self.socket}\nchmod=0700\n",
            f"[supervisord]\nlogfile={self.log_directory / 'hdfs-supervisord.log'}\n"
            f"pidfile={self.supervisor_pid}\nchildlogdir={self.log_directory}\n",
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
            f"[supervisorctl]\nserverurl=unix://{self.socket}\n",
        ]
        commands = {
            "namenode": self.java_command(NAMENODE_CLASS),
            "datanode": self.java_command(DATANODE_CLASS),
        }
        # The NameNode first; the DataNode retries until the NameNode answers.
        for priority, (name, command) in enumerate(commands.items(), start=1):
            sections.append(
                f"[program:{name}]\ncommand={shlex.join(command)}\npriority={priority}\n"
                f"directory={self.directory}\nenvironment=HADOOP_USER_NAME={self.user!r}\n"
                "autorestart=true\nstartsecs=3\nstopwaitsecs=30\nredirect_stderr=true\n"
                f"stdout_logfile={self.log_directory / ('hdfs-' + name + '.log')}\n"
                "stdout_logfile_maxbytes=20MB\n"
            )
        return "\n".join(sections).replace("%", "%%")

    def _rpc(self, method: str) -> Any:
        return supervisor_call(self.socket, method)

    def supervisor_running(self) -> bool:
        """Tell whether the HDFS supervisord answers."""
        try:
            return bool(self._rpc("getState")["statename"] == "RUNNING")
        except (OSError, xmlrpc.client.Fault):
            return False

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
        self.run_directory.mkdir(parents=True, exist_ok=True)
        self.log_directory.mkdir(parents=True, exist_ok=True)
        config = self.supervisor_config()
        if self.supervisor_running():
            if self.supervisor_conf.exists() and self.supervisor_conf.read_text() == config:
                self._wait_healthy(timeout)
                return time.monotonic() - started
            # Ports or heap changed: the daemons must start again with the new settings.
            self.stop()
        self.supervisor_conf.write_text(config)
        result = subprocess.run(
            [venv_bin("supervisord"), "-c", str(self.supervisor_conf)],
            env=self._environment(),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise HdfsError(f"supervisord for HDFS did not start: {result.stderr.strip()}")
        _wait_for(self.supervisor_running, 20, "the HDFS supervisord")
        self._wait_healthy(timeout)
        return time.monotonic() - started

    def _wait_healthy(self, timeout: float) -> None:
        try:
            _wait_for(self.healthy, timeout, "HDFS to leave safe mode with a live DataNode")
        except HdfsError as error:
            tails = []
            for name in PROGRAMS:
                log = self.log_directory / f"hdfs-{name}.log"
                if log.exists():
                    lines = log.read_text(errors="replace").splitlines()[-8:]
                    tails.append(f"--- {log}\n" + "\n".join(lines))
            raise HdfsError("\n".join([str(error), *tails])) from error

    def stop(self) -> bool:
        """Stop the DataNode, the NameNode and their supervisord; return False if none ran."""
        if not self.supervisor_running():
            return False
        pid = int(self.supervisor_pid.read_text()) if self.supervisor_pid.exists() else None
        self._rpc("shutdown")
        if pid is not None:
            _wait_for(lambda: not psutil.pid_exists(pid), 60, "the HDFS supervisord to stop")
        return True

    def status(self) -> list[ServiceState]:
        """Return the state of the NameNode and the DataNode."""
        if not self.supervisor_running():
            return [ServiceState(name, "STOPPED", None, None) for name in PROGRAMS]
        details = {
            "namenode": f"{self.url()} (WebHDFS {self.webhdfs_url()})",
            "datanode": f"127.0.0.1:{self.settings.hdfs_datanode_port}",
        }
        return supervised_services(self.socket, lambda info: details.get(info["name"], ""))
