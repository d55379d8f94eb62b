"""Typed settings: every knob has the TRIPFLOW_ prefix and a safe local default."""

from __future__ import annotations

import os
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import ByteSize, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tripflow.records import DEFAULT_WINDOW, TripWindow

# Finest H3 resolution, and the minutes of a day (the time-of-day buckets' range).
MAX_RESOLUTION = 15
MINUTES_PER_DAY = 24 * 60
# Similar-trip groups by default: cells about 1 km across (and 2.5 km), quarter hours.
DEFAULT_GROUP_RESOLUTIONS = (8, 7)
DEFAULT_GROUP_MINUTES = 15


class SparkRunnerMode(StrEnum):
    """How the pipeline runs its Spark job."""

    # On the stack's warm Spark Connect server (spark-submit when none answers).
    CONNECT = "connect"
    # A spark-submit application per batch (a cluster's own scheduling of each job).
    SUBMIT = "submit"


class AirflowExecutor(StrEnum):
    """Where Airflow runs the DAG's tasks."""

    # Processes the scheduler forks (LocalExecutor).
    LOCAL = "local"
    # Celery workers fed through a Redis broker (CeleryExecutor).
    CELERY = "celery"


def machine_memory() -> int:
    """Return the machine's physical memory in bytes."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def default_spark_memory() -> str:
    """A sixth of the machine's memory (to 512 MiB), between 1 GiB and 8 GiB, in Spark's units.

    At 2g, the final stage of a 10M-row batch (de-duplication and sort) spilled 3.7-5.2 GB
    and took 53-61 s instead of 37 s at 4g (docs/benchmarks.md); a sixth leaves the managed
    PostgreSQL its quarter, Airflow and the page cache the rest."""
    sixth = round(machine_memory() / 6 / 2**29) * 512  # MiB, to the nearest 512
    return f"{max(1024, min(8192, sixth))}m"


class Settings(BaseSettings):
    """Settings for every tripflow entry point (CLI, API, Spark job, DAG)."""

    model_config = SettingsConfigDict(env_prefix="TRIPFLOW_", env_file=".env", extra="ignore")

    home: Path = Field(
        default=Path(".tripflow"),
        description="State directory: the local lake, the managed database, logs and pid files.",
    )
    lake_url: str | None = Field(
        default=None,
        description="Root of the lake (file:///path, hdfs://host:port/path, s3://bucket/path). "
        "Default: the directory lake/ under the home.",
    )
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL of an existing server with PostGIS. "
        "Default: the private cluster that tripflow manages under the home.",
    )
    database_port: int = Field(
        default=55432, description="Port of the managed PostgreSQL cluster (loopback only)."
    )
    spark_master: str = Field(default="local[*]", description="Spark master URL.")
    spark_driver_memory: str | None = Field(
        default=None,
        description="Memory of the Spark driver (the executor too in local mode), e.g. 4g. "
        "Default: a sixth of the machine's memory, between 1g and 8g.",
    )
    trip_earliest: datetime = Field(
        default=DEFAULT_WINDOW.earliest,
        description="Earliest trip time the data contract accepts (wall-clock); an earlier "
        "trip is a rejected row (datetime_out_of_window).",
    )
    trip_latest: datetime = Field(
        default=DEFAULT_WINDOW.latest,
        description="Trip times from this one on are rejected rows (datetime_out_of_window). "
        "With the default hundred-year window, a question without a range never spans more "
        "weeks than the API answers.",
    )
    spark_runner: SparkRunnerMode = Field(
        default=SparkRunnerMode.CONNECT,
        description="How the Spark job runs. connect: `tripflow up` keeps a Spark Connect "
        "server (master TRIPFLOW_SPARK_MASTER) running and every batch goes to it, with no "
        "JVM start per batch; a batch finding no server answering is submitted with "
        "spark-submit instead. submit: spark-submit per batch, and no server is started.",
    )
    spark_connect_port: int = Field(
        default=15002,
        description="Port of the stack's Spark Connect server (gRPC, loopback only).",
    )
    spark_master_webui_port: int = Field(
        default=8081,
        description="Port of the web UI (and /json/ health page) of the standalone master "
        "tripflow runs when TRIPFLOW_SPARK_MASTER is spark://127.0.0.1:PORT (its own "
        "default, 8080, is Airflow's).",
    )
    spark_workers: int = Field(
        default=2, ge=1, description="Workers of the standalone cluster tripflow runs."
    )
    spark_worker_cores: int = Field(
        default=1, ge=1, description="Cores each worker of that cluster offers."
    )
    spark_worker_memory: str = Field(
        default="1536m", description="Memory each worker of that cluster offers its executors."
    )
    spark_executor_memory: str = Field(
        default="1g",
        description="Memory of each executor on a cluster master (spark://, yarn, k8s://); "
        "in local mode the driver's memory is the executor's.",
    )
    api_host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    api_port: int = Field(default=50555, description="Port of the API (`serve --port` overrides).")
    api_workers: int = Field(default=2, description="gunicorn worker processes of the API.")
    api_threads: int = Field(
        default=4,
        description="Threads per API worker: a slow question then holds one thread, not the "
        "whole worker, and the threads share the worker's answer cache.",
    )
    api_max_streams: int = Field(
        default=100,
        ge=1,
        description="Open event streams (GET /ingestions/events) each API worker serves; each "
        "holds a thread of its own beside the api_threads that answer questions, so streams "
        "never take a question's thread. One more gets a 503.",
    )
    api_stream_heartbeat: float = Field(
        default=15.0,
        gt=0,
        description="Seconds between comment lines on an idle event stream, which keep proxies "
        "from closing it and let the API notice a client that left.",
    )
    api_answer_cache: int = Field(
        default=1024,
        description="Weekly-average answers each API worker keeps, by question and data "
        "version (a publish that adds trips makes them stale at once); 0 turns it off.",
    )
    api_database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL the API connects with. Default: the role tripflow_api "
        "that `tripflow migrate` creates, with SELECT on what the API reads and nothing else.",
    )
    api_lock_timeout: float = Field(
        default=2.0,
        gt=0,
        description="Seconds an API question waits for a lock on the trips before it answers "
        "503: a publish that rebuilds a week partition's indexes holds that partition until "
        "it commits (questions the serving copy answers never wait).",
    )
    serving_dir: Path | None = Field(
        default=None,
        description="Directory of the serving copy (sorted Parquet segments DuckDB answers "
        "weekly averages from), on the API host's local disk. Default: serving/ under the home.",
    )
    serving_memory_limit: str = Field(
        default="512MB",
        description="DuckDB memory limit of each process answering from the serving copy.",
    )
    serving_write_memory_limit: str = Field(
        default="2GB",
        description="DuckDB memory limit of a publish writing its batch to the serving copy "
        "(it sorts the batch three ways; beyond the limit DuckDB spills to disk).",
    )
    serving_max_segments: int = Field(
        default=8,
        ge=2,
        description="Segments of the serving copy in use beyond which the smaller half is "
        "merged into one after an ingest (each segment is one more scan per count).",
    )
    serving_threads: int = Field(
        default=2, ge=1, description="DuckDB threads per process reading or writing the copy."
    )
    group_resolutions: Annotated[list[int], NoDecode] = Field(
        default=list(DEFAULT_GROUP_RESOLUTIONS),
        description="H3 resolutions (0-15) at which the serving copy keeps similar-trip groups, "
        "comma-separated; the first is the default of /trip-groups (8: cells about 1 km "
        "across). A change applies to segments written after it: `tripflow serving rebuild`.",
    )
    group_minutes: int = Field(
        default=DEFAULT_GROUP_MINUTES,
        ge=1,
        le=1440,
        description="Width in minutes of the time-of-day buckets the groups are kept in; "
        "/trip-groups answers any width that is a multiple of it and divides the day.",
    )
    airflow_port: int = Field(default=8080, description="Port of the Airflow UI and REST API.")
    airflow_log_server_port: int = Field(
        default=8793,
        description="Port on which the scheduler serves its tasks' logs to the UI "
        "(loopback; one per stack on a machine).",
    )
    airflow_trigger_log_server_port: int = Field(
        default=8794,
        description="Port on which the triggerer serves its logs to the UI (loopback).",
    )
    airflow_username: str = Field(default="admin", description="Airflow UI login.")
    airflow_password: str = Field(default="admin", description="Airflow UI password.")
    airflow_database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of Airflow's metadata database. Default: the database "
        "`airflow` on the warehouse's server (on the managed cluster, owned by its own role "
        "tripflow_airflow).",
    )
    airflow_executor: AirflowExecutor = Field(
        default=AirflowExecutor.LOCAL,
        description="Where Airflow runs the DAG's tasks. local: processes the scheduler forks. "
        "celery: the stack's Celery workers (celery_workers of them), which take the tasks "
        "from a Redis broker (redis_url, or the Redis tripflow runs on redis_port).",
    )
    redis_port: int = Field(
        default=56379,
        description="Port of the Redis tripflow runs as the Celery broker (loopback only; not "
        "6379, which Debian's own redis-server service takes).",
    )
    redis_url: str | None = Field(
        default=None,
        description="URL of an existing Redis (ElastiCache: rediss://...) as the Celery "
        "broker; tripflow then runs no Redis. Default: the Redis tripflow runs on redis_port.",
    )
    celery_workers: int = Field(
        default=2, ge=1, description="Celery workers the stack runs with the celery executor."
    )
    celery_worker_concurrency: int = Field(
        default=2, ge=1, description="Tasks each Celery worker runs at once."
    )
    celery_log_server_port: int = Field(
        default=8795,
        description="Port on which the first Celery worker serves its tasks' logs to the UI; "
        "each next worker takes the port after (one range per stack on a machine).",
    )

    @property
    def manages_redis(self) -> bool:
        """Tell whether tripflow runs the Celery broker itself (the celery executor without a
        redis_url)."""
        return self.airflow_executor is AirflowExecutor.CELERY and not self.redis_url

    @property
    def celery_broker_url(self) -> str:
        """Return the URL of the Celery broker: redis_url, or the Redis tripflow runs."""
        if self.redis_url:
            return self.redis_url
        from tripflow.services import redis

        return redis.url(self)

    database_data_dir: Path | None = Field(
        default=None,
        description="Data directory of a PostgreSQL on this host that tripflow does not "
        "manage: publish checks the free disk there before writing. Default: the managed "
        "cluster's; with neither (a remote server) the check is skipped.",
    )
    publish_disk_reserve: ByteSize = Field(
        default=ByteSize(2 * 1024**3),
        description="Free disk a publish leaves on the database's disk (bytes, or 500MB, "
        "2GiB, ...): a batch that would eat into it rebuilds no indexes, or fails before "
        "writing anything if it cannot fit at all.",
    )
    max_batch_attempts: int = Field(
        default=3,
        description="Failed attempts after which a batch is set aside as failed and its files "
        "moved to the lake's failed area (so it does not block newer files).",
    )
    sensor_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often the DAG's sensor looks at the landing dir; a file is taken "
        "once its size held over two looks, so a small file waits one to two of these. "
        "A listing per look: raise it for a lake that charges per request.",
    )
    hdfs_port: int = Field(
        default=8020, description="RPC port of the managed HDFS NameNode (loopback only)."
    )
    hdfs_http_port: int = Field(
        default=9870,
        description="HTTP port of the NameNode: WebHDFS, through which the lake reads and "
        "writes hdfs:// URLs from Python, and JMX.",
    )
    hdfs_user: str = Field(
        default="tripflow",
        description="HDFS user name: the managed HDFS runs as it, and WebHDFS calls assert it.",
    )
    hdfs_datanode_port: int = Field(
        default=9866, description="Data transfer port of the managed DataNode (0: any free)."
    )
    hdfs_datanode_http_port: int = Field(
        default=9864,
        description="HTTP port of the managed DataNode, where WebHDFS sends data (0: any free).",
    )
    hdfs_datanode_ipc_port: int = Field(
        default=9867, description="IPC port of the managed DataNode (0: any free)."
    )
    hdfs_heap: str = Field(
        default="384m", description="Maximum Java heap of the NameNode and of the DataNode each."
    )
    s3_endpoint: str | None = Field(
        default=None,
        description="URL of the S3 server of an s3:// lake, e.g. http://127.0.0.1:9000. On "
        "loopback, tripflow runs that server itself (versitygw, data under the home). "
        "Default: AWS S3 in s3_region.",
    )
    s3_region: str = Field(default="us-east-1", description="Region of the S3 bucket.")
    s3_access_key: str | None = Field(
        default=None,
        description="Access key of the S3 lake (with s3_secret_key, or neither). Default: "
        "AWS's credential providers: for Python the whole chain (environment, ~/.aws, "
        "instance or task role), for Spark S3A's (environment, instance or task role; no "
        "~/.aws profiles); for the server tripflow runs, tripflow.",
    )
    s3_secret_key: str | None = Field(
        default=None,
        description="Secret key of the S3 lake. Default: as s3_access_key; for the server "
        "tripflow runs, tripflow-secret.",
    )
    s3_server_bin: Path | None = Field(
        default=None,
        description="The versitygw binary the local S3 server runs (scripts/fetch-versitygw.sh "
        "builds it). Default: $XDG_CACHE_HOME/tripflow/versitygw-1.8.0/versitygw.",
    )
    s3a_jars: Path | None = Field(
        default=None,
        description="Directory of the jars Spark reads and writes s3:// through (Hadoop's S3A "
        "and a slim AWS SDK; scripts/fetch-s3a.sh fills it). "
        "Default: $XDG_CACHE_HOME/tripflow/s3a-3.5.0/jars.",
    )
    events_url: str | None = Field(
        default=None,
        description="Queue of the lake's bucket events, kafka://host:port/topic: the S3 server "
        "sends each upload there and the DAG starts from it (an Airflow AssetWatcher) instead "
        "of polling the landing dir. On loopback, tripflow runs the Kafka broker. Default: "
        "none (the DAG polls).",
    )
    events_sweep_minutes: int = Field(
        default=10,
        ge=0,
        le=59,
        description="With bucket events: the DAG also runs every this many minutes, for a file "
        "whose event never came (sent while the queue was down, say); 0: events only.",
    )
    kafka_controller_port: int = Field(
        default=9093,
        description="Port of the KRaft controller of the Kafka broker tripflow runs (loopback).",
    )
    kafka_heap: str = Field(default="384m", description="Java heap of the Kafka broker.")
    kafka_jars: Path | None = Field(
        default=None,
        description="Directory of the jars the Kafka broker runs from (scripts/fetch-kafka.sh "
        "fills it). Default: $XDG_CACHE_HOME/tripflow/kafka-4.1.2/jars.",
    )
    hadoop_jars: Path | None = Field(
        default=None,
        description="Directory of the Hadoop jars the managed HDFS runs from "
        "(scripts/fetch-hadoop.sh fills it). "
        "Default: $XDG_CACHE_HOME/tripflow/hadoop-3.5.0/jars (~/.cache when unset).",
    )

    @property
    def home_dir(self) -> Path:
        """Return the absolute state directory."""
        return self.home.expanduser().resolve()

    @property
    def serving_dir_path(self) -> Path:
        """Return the absolute directory of the serving copy."""
        return (self.serving_dir or self.home_dir / "serving").expanduser().resolve()

    @field_validator("group_resolutions", mode="before")
    @classmethod
    def _split_resolutions(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("group_resolutions")
    @classmethod
    def _resolutions_in_range(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("give at least one H3 resolution")
        for resolution in value:
            if not 0 <= resolution <= MAX_RESOLUTION:
                raise ValueError(f"H3 resolution {resolution} is outside 0-{MAX_RESOLUTION}")
        return list(dict.fromkeys(value))

    @field_validator("group_minutes")
    @classmethod
    def _minutes_divide_the_day(cls, value: int) -> int:
        if MINUTES_PER_DAY % value:
            raise ValueError(f"{value} does not divide the {MINUTES_PER_DAY} minutes of a day")
        return value

    @model_validator(mode="after")
    def _s3_keys_go_together(self) -> Settings:
        if bool(self.s3_access_key) != bool(self.s3_secret_key):
            raise ValueError(
                "set both TRIPFLOW_S3_ACCESS_KEY and TRIPFLOW_S3_SECRET_KEY, or neither "
                "(the AWS credential chain)"
            )
        return self

    @model_validator(mode="after")
    def _window_ends_after_it_starts(self) -> Settings:
        TripWindow(self.trip_earliest, self.trip_latest)
        return self

    @property
    def trip_window(self) -> TripWindow:
        """Return the trip times the data contract accepts."""
        return TripWindow(self.trip_earliest, self.trip_latest)

    @property
    def driver_memory(self) -> str:
        """Return the Spark driver's memory: the setting, or a sixth of the machine's."""
        return self.spark_driver_memory or default_spark_memory()

    @property
    def lake_root(self) -> str:
        """Return the lake URL, defaulting to a directory under the home."""
        if self.lake_url:
            return self.lake_url.rstrip("/")
        # Not Path.as_uri(): Spark takes the URL literally and would look for "%20".
        return f"file://{self.home_dir / 'lake'}"

    @property
    def manages_hdfs(self) -> bool:
        """Tell whether the lake is the single-node HDFS tripflow runs on this machine."""
        parts = urlsplit(self.lake_root)
        return (
            parts.scheme == "hdfs"
            and parts.hostname in ("127.0.0.1", "localhost")
            and (parts.port or 8020) == self.hdfs_port
        )

    @property
    def executor_memory(self) -> str | None:
        """Return the executors' memory on a cluster master; None in local mode, where the
        driver is the executor."""
        return None if self.spark_master.startswith("local") else self.spark_executor_memory

    @property
    def manages_spark_cluster(self) -> bool:
        """Tell whether the Spark master is a standalone cluster tripflow runs on this machine
        (spark:// on loopback)."""
        parts = urlsplit(self.spark_master)
        return parts.scheme == "spark" and parts.hostname in ("127.0.0.1", "localhost")

    @property
    def events(self) -> tuple[str, str] | None:
        """Return the bucket events' Kafka bootstrap address and topic, or None (polling)."""
        if not self.events_url:
            return None
        parts = urlsplit(self.events_url)
        return f"{parts.hostname or '127.0.0.1'}:{parts.port or 9092}", parts.path.strip("/")

    @property
    def manages_kafka(self) -> bool:
        """Tell whether the events' Kafka broker is one tripflow runs (on loopback)."""
        return bool(self.events_url) and urlsplit(self.events_url or "").hostname in (
            "127.0.0.1",
            "localhost",
        )

    @field_validator("events_url")
    @classmethod
    def _events_on_kafka(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme != "kafka" or not parts.hostname or not parts.path.strip("/"):
            raise ValueError(f"{value!r} is not kafka://host:port/topic")
        return value

    @property
    def manages_s3(self) -> bool:
        """Tell whether the lake is on the S3 server tripflow runs on this machine (an s3://
        lake whose endpoint is on loopback)."""
        if urlsplit(self.lake_root).scheme != "s3" or not self.s3_endpoint:
            return False
        return urlsplit(self.s3_endpoint).hostname in ("127.0.0.1", "localhost")

    @property
    def s3_credentials(self) -> tuple[str, str] | None:
        """Return the S3 lake's access and secret key, or None for the AWS credential chain
        (the server tripflow runs has keys of its own by default)."""
        if self.s3_access_key and self.s3_secret_key:
            return self.s3_access_key, self.s3_secret_key
        if self.manages_s3:
            return self.s3_access_key or "tripflow", self.s3_secret_key or "tripflow-secret"
        return None

    def environment(self) -> dict[str, str]:
        """Return these settings as TRIPFLOW_* variables, for processes started from here
        (Airflow, supervised services) to build the same settings."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        values |= {
            "home": self.home_dir,
            "lake_url": self.lake_root,
            "database_url": self.database_dsn,
        }
        return {
            # Lists as the environment writes them: comma-separated.
            f"TRIPFLOW_{name.upper()}": (
                ",".join(str(item) for item in value) if isinstance(value, list) else str(value)
            )
            for name, value in values.items()
            if value is not None
        }

    @property
    def database_data_path(self) -> Path | None:
        """Return the database's data directory when it is on this host, else None."""
        if self.database_data_dir is not None:
            return self.database_data_dir.expanduser().resolve()
        return self.managed_database_dir / "data" if self.manages_database else None

    @property
    def managed_database_dir(self) -> Path:
        """Return the directory of the PostgreSQL cluster tripflow manages."""
        from tripflow.services import postgres

        return postgres.cluster_directory(self.home_dir)

    @property
    def manages_database(self) -> bool:
        """Tell whether tripflow runs its own PostgreSQL cluster."""
        return not self.database_url

    @property
    def api_database_dsn(self) -> str:
        """Return the URL the API connects with: its own read-only role unless one is set
        (the owner's, when its URL has no password to derive the role's from)."""
        if self.api_database_url:
            return self.api_database_url
        from tripflow.warehouse import roles

        owner = self.database_dsn
        return roles.login_url(owner, roles.API_LOGIN) or owner

    @property
    def database_dsn(self) -> str:
        """Return the connection URL of the warehouse."""
        if self.database_url:
            return self.database_url
        from tripflow.services import postgres

        return postgres.ManagedPostgres(self).url()
