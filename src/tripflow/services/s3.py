"""The S3 server of an s3:// lake on loopback: versitygw over a directory under the home.

A declaration: its program (`versitygw posix`), its health check and the settings it reads
(`lake_url`, `s3_endpoint`, `s3_access_key`, `s3_secret_key`, `s3_server_bin`, and the
Kafka topic its bucket events go to when events are on). It runs under a supervisord of its
own, apart from the stack's, so the lake can be up while the stack is down (as HDFS). Each
top-level directory of `<home>/s3/buckets` is a bucket; objects are plain files below it.

versitygw, not a mock: a real S3 protocol server (SigV4, multipart uploads, listings), which
also sends AWS-style bucket events to Kafka."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tripflow.services.supervisor import (
    Program,
    ServiceError,
    ServiceState,
    Supervisor,
    http_get_json,
)

if TYPE_CHECKING:
    from tripflow.config import Settings

VERSITYGW_VERSION = "1.8.0"
PROGRAM = "s3-server"


class S3Error(ServiceError):
    """The local S3 server could not be found, started or stopped."""


def default_binary() -> Path:
    """Return where scripts/fetch-versitygw.sh puts the binary by default."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tripflow" / f"versitygw-{VERSITYGW_VERSION}" / "versitygw"


class ManagedS3:
    """versitygw on the loopback address and port of `s3_endpoint`, its buckets under
    `<home>/s3`."""

    name = "s3-server"

    def __init__(self, settings: Settings, events: tuple[str, str] | None = None) -> None:
        """`events`: (Kafka bootstrap address, topic) that bucket events go to, if any."""
        if not settings.s3_endpoint:
            raise S3Error("TRIPFLOW_S3_ENDPOINT is not set: there is no local S3 server to run")
        self.settings = settings
        self.events = events
        endpoint = urlsplit(settings.s3_endpoint)
        self.host = endpoint.hostname or "127.0.0.1"
        self.port = endpoint.port or 80
        self.directory = settings.home_dir / "s3" / "buckets"
        self.metadata_directory = settings.home_dir / "s3" / "metadata"
        self.binary = (settings.s3_server_bin or default_binary()).expanduser()
        self.supervisor = Supervisor("s3", settings.home_dir / "run", settings.home_dir / "logs")
        credentials = settings.s3_credentials
        if credentials is None:
            raise S3Error(
                "the local S3 server needs keys: TRIPFLOW_S3_ACCESS_KEY and TRIPFLOW_S3_SECRET_KEY"
            )
        self.access_key, self.secret_key = credentials

    @property
    def endpoint(self) -> str:
        """Return the server's URL."""
        return f"http://{self.host}:{self.port}"

    def programs(self) -> list[Program]:
        """Return the server's program."""
        if not self.binary.exists():
            raise S3Error(
                f"versitygw not found at {self.binary}: run scripts/fetch-versitygw.sh "
                "(or set TRIPFLOW_S3_SERVER_BIN)"
            )
        command = [str(self.binary), "--port", f"{self.host}:{self.port}"]
        if self.events is not None:
            broker, topic = self.events
            command += ["--event-kafka-url", broker, "--event-kafka-topic", topic]
        # Object metadata (content type, user metadata) goes to a sidecar directory rather
        # than extended attributes, which not every filesystem under a home supports.
        command += ["posix", "--sidecar", str(self.metadata_directory), str(self.directory)]
        return [
            Program(
                PROGRAM,
                command,
                # Keys through the environment, not the command line every `ps` shows.
                environment={
                    "ROOT_ACCESS_KEY": self.access_key,
                    "ROOT_SECRET_KEY": self.secret_key,
                },
            )
        ]

    def healthy(self) -> bool:
        """Tell whether the server answers HTTP (an anonymous request gets an S3 error)."""
        status, _ = http_get_json(f"{self.endpoint}/")
        return status != 0

    def start(self, timeout: float = 60) -> float:
        """Start the server (if not running as configured), wait until it answers and create
        the lake's bucket; return the seconds it took."""
        started = time.monotonic()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.metadata_directory.mkdir(parents=True, exist_ok=True)
        self.supervisor.start(self.programs(), dict(os.environ), S3Error)
        self.supervisor.wait_healthy(
            self.healthy, timeout, f"the S3 server on {self.endpoint}", [PROGRAM], S3Error
        )
        self.create_bucket()
        return time.monotonic() - started

    def create_bucket(self) -> None:
        """Create the bucket the lake URL names, through the S3 API, if it is missing."""
        from tripflow.lake import open_lake

        lake = open_lake(self.settings)
        bucket = urlsplit(lake.url).netloc
        if not lake.fs.exists(bucket):
            # Not fs.mkdir: s3fs sends the client's region as the location constraint, which
            # a server with one region (and AWS's us-east-1) refuses.
            lake.fs.call_s3("create_bucket", Bucket=bucket)

    def stop(self) -> bool:
        """Stop the server; return False if it was not running."""
        return self.supervisor.stop(S3Error)

    def status(self) -> list[ServiceState]:
        """Return the state of the server."""
        return self.supervisor.states(lambda info: self.endpoint, [PROGRAM])
