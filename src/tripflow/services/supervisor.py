"""The one supervisor every service runs under: programs, start, wait for health, stop, memory.

A service module declares its programs (`Program`) and its health check; a `Supervisor` is
one supervisord (a well-kept process supervisor) with a name of its own under the home's
`run/` directory, so groups that live apart (the lake's HDFS or S3 server, the Spark cluster,
the stack) start and stop apart. Every program runs through `process_group`, so what a
predecessor killed outright left running ends before it starts again."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xmlrpc.client
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from supervisor.xmlrpc import SupervisorTransport
from tenacity import RetryError, retry, retry_if_result, stop_after_delay, wait_fixed


class ServiceError(RuntimeError):
    """A supervised service did not start, answer or stop."""


@dataclass(frozen=True)
class ServiceState:
    """One service as `status` shows it."""

    name: str
    state: str
    pid: int | None
    memory_mb: float | None
    detail: str = ""


@dataclass(frozen=True)
class Program:
    """One long-running program: its command (in the foreground), its own environment on top
    of its supervisor's, the directory it runs in and its start order (lower first)."""

    name: str
    command: Sequence[str]
    environment: Mapping[str, str] = field(default_factory=dict)
    directory: Path | None = None
    priority: int = 999
    # Seconds a stop waits for the program to end before SIGKILL.
    stop_seconds: int = 20


def venv_bin(name: str) -> str:
    """Return the path of a command installed in this Python environment."""
    return str(Path(sys.executable).parent / name)


def wait_for(
    check: Callable[[], Any], seconds: float, what: str, error: type[Exception] = ServiceError
) -> None:
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


def supervisor_call(socket: Path, method: str, *arguments: Any) -> Any:
    """Call one method of a supervisord's XML-RPC interface over its unix socket."""
    transport = SupervisorTransport(None, None, f"unix://{socket}")
    try:
        proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
        return getattr(proxy.supervisor, method)(*arguments)
    finally:
        # The transport keeps its socket open for a next call that never comes.
        transport.close()


def log_tail(path: Path, lines: int = 8) -> str:
    """Return the last lines of a log file, headed by its path (empty if there is none)."""
    if not path.exists():
        return ""
    tail = path.read_text(errors="replace").splitlines()[-lines:]
    return f"--- {path}\n" + "\n".join(tail)


def _quote_environment(environment: Mapping[str, str]) -> str:
    # supervisord's environment= takes KEY="value" pairs separated by commas.
    pairs = []
    for key, value in environment.items():
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        pairs.append(f'{key}="{escaped}"')
    return ",".join(pairs)


class Supervisor:
    """One supervisord: its socket, configuration and pid file under `run_directory`, named
    `<name>-supervisor*` (the stack's plain `supervisor*`), and its programs' logs under
    `log_directory` as `<log_prefix><program>.log`."""

    def __init__(
        self, name: str, run_directory: Path, log_directory: Path, log_prefix: str = ""
    ) -> None:
        self.name = name
        self.run_directory = run_directory
        self.log_directory = log_directory
        self.log_prefix = log_prefix
        stem = f"{name}-supervisor" if name else "supervisor"
        self.socket = run_directory / f"{stem}.sock"
        self.config_path = run_directory / f"{stem}d.conf"
        self.pid_file = run_directory / f"{stem}d.pid"
        self.own_log = log_directory / f"{stem}d.log"

    def log_path(self, program: str) -> Path:
        """Return the log file of one of the programs."""
        return self.log_directory / f"{self.log_prefix}{program}.log"

    def config(self, programs: Sequence[Program]) -> str:
        """Render supervisord's configuration for these programs."""
        sections = [
            f"[unix_http_server]\nfile={self.socket}\nchmod=0700\n",
            f"[supervisord]\nlogfile={self.own_log}\npidfile={self.pid_file}\n"
            f"childlogdir={self.log_directory}\n",
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
            f"[supervisorctl]\nserverurl=unix://{self.socket}\n",
        ]
        for program in programs:
            guarded = [
                venv_bin("python"),
                "-m",
                "tripflow.services.process_group",
                str(self.run_directory / f"{self.log_prefix}{program.name}.group"),
                "--",
                *program.command,
            ]
            lines = [
                f"[program:{program.name}]",
                f"command={shlex.join(guarded)}",
                f"priority={program.priority}",
                "autorestart=true",
                "startsecs=3",
                # Airflow, gunicorn and Celery fork workers that must go with them.
                "stopasgroup=true",
                "killasgroup=true",
                f"stopwaitsecs={program.stop_seconds}",
                "redirect_stderr=true",
                f"stdout_logfile={self.log_path(program.name)}",
                "stdout_logfile_maxbytes=20MB",
            ]
            if program.directory is not None:
                lines.append(f"directory={program.directory}")
            if program.environment:
                lines.append(f"environment={_quote_environment(program.environment)}")
            sections.append("\n".join(lines) + "\n")
        return "\n".join(sections).replace("%", "%%")

    def call(self, method: str, *arguments: Any) -> Any:
        """Call one method of this supervisord's XML-RPC interface."""
        return supervisor_call(self.socket, method, *arguments)

    def running(self) -> bool:
        """Tell whether this supervisord answers."""
        try:
            return bool(self.call("getState")["statename"] == "RUNNING")
        except (OSError, xmlrpc.client.Fault):
            return False

    def start(
        self,
        programs: Sequence[Program],
        environment: Mapping[str, str],
        error: type[Exception] = ServiceError,
    ) -> bool:
        """Start supervisord with these programs; return False if it already ran them as
        configured (then nothing changes). A changed configuration restarts everything:
        programs inherit supervisord's environment, fixed when it starts."""
        self.run_directory.mkdir(parents=True, exist_ok=True)
        self.log_directory.mkdir(parents=True, exist_ok=True)
        config = self.config(programs)
        if self.running():
            if self.config_path.exists() and self.config_path.read_text() == config:
                return False
            self.stop(error)
        self.config_path.write_text(config)
        result = subprocess.run(
            [venv_bin("supervisord"), "-c", str(self.config_path)],
            env=dict(environment),
            capture_output=True,
            text=True,
        )
        label = f"supervisord {self.name or 'of the stack'}"
        if result.returncode != 0:
            raise error(f"{label} did not start: {result.stderr.strip()}")
        wait_for(self.running, 20, label, error)
        return True

    def stop(self, error: type[Exception] = ServiceError) -> bool:
        """Stop every program and supervisord itself; return False if none ran."""
        if not self.running():
            return False
        pid = int(self.pid_file.read_text()) if self.pid_file.exists() else None
        self.call("shutdown")
        if pid is not None:
            label = f"supervisord {self.name or 'of the stack'} to stop"
            wait_for(lambda: not psutil.pid_exists(pid), 60, label, error)
        return True

    def states(
        self,
        detail: Callable[[dict[str, Any]], str] = lambda info: "",
        names: Sequence[str] = (),
    ) -> list[ServiceState]:
        """Return the state of every program (`names` stopped when supervisord is not up)."""
        if not self.running():
            return [ServiceState(name, "STOPPED", None, None) for name in names]
        return supervised_services(self.socket, detail)

    def wait_healthy(
        self,
        check: Callable[[], Any],
        timeout: float,
        what: str,
        programs: Sequence[str],
        error: type[Exception] = ServiceError,
    ) -> float:
        """Wait until `check` passes; on timeout, raise with the programs' log tails.
        Return the seconds waited."""
        started = time.monotonic()
        try:
            wait_for(check, timeout, what, error)
        except error as failure:
            tails = [log_tail(self.log_path(name)) for name in programs]
            raise error("\n".join([str(failure), *filter(None, tails)])) from failure
        return time.monotonic() - started


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
