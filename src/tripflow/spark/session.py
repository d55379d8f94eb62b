"""Build the Spark session every tripflow entry point uses, with the same settings: in this
process (classic), or on a Spark Connect server."""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

# PySpark is imported where a session is built: the stack declares its Spark Connect server
# from the settings below without paying for it.
if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.connect.session import SparkSession as ConnectSession

# Either kind of session: the job only uses the DataFrame API both share.
AnySession: TypeAlias = "SparkSession | ConnectSession"

# SQL settings of every tripflow session; a Connect client sets them on its own session, so
# a server started with other defaults still runs the job the same way.
SQL_CONF = {
    # Trip datetimes are wall-clock values without zone: a fixed UTC session zone keeps any
    # timestamp conversion from shifting them by the zone of whichever machine runs the job.
    "spark.sql.session.timeZone": "UTC",
    # The default of 200 shuffle partitions means 200 tiny tasks per shuffle for batches of a
    # few files; AQE (on by default) still splits or coalesces partitions by measured size.
    "spark.sql.shuffle.partitions": "8",
}
# Settings of the application (the JVM), fixed when it starts.
APPLICATION_CONF = {
    # Batch jobs have no one watching the UI; it costs a port and startup time.
    "spark.ui.enabled": "false",
    # The console progress bar fills logs of non-interactive runs with carriage returns.
    "spark.ui.showConsoleProgress": "false",
}
# Hadoop's S3A and the AWS SDK modules it needs, as scripts/fetch-s3a.sh caches them.
S3A_VERSION = "3.5.0"
# What PySpark reads to tell whether functions build Spark Connect columns.
_CONNECT_MODE = "SPARK_CONNECT_MODE_ENABLED"


def local_environment() -> dict[str, str]:
    """Return the variables a Spark JVM started from this environment needs."""
    # Read by the JVM at launch only. Without SPARK_LOCAL_IP Spark binds the first
    # non-loopback interface (slow or unreachable on laptops and sandboxes); without
    # PYSPARK_PYTHON the Python workers run a system interpreter that lacks the project's
    # packages.
    return {
        "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }


def spark_home() -> Path:
    """Return PySpark's install directory (bin/, jars/) without importing it."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("pyspark")
    return Path(spec.origin).parent


def default_s3a_jars_directory() -> Path:
    """Return where scripts/fetch-s3a.sh puts the S3A jars by default."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tripflow" / f"s3a-{S3A_VERSION}" / "jars"


def s3a_jars(directory: Path | None = None) -> list[str]:
    """Return the S3A jars (sorted paths), or raise FileNotFoundError saying how to fetch them."""
    folder = (directory or default_s3a_jars_directory()).expanduser()
    jars = sorted(str(path) for path in folder.glob("*.jar"))
    if not any(Path(jar).name == f"hadoop-aws-{S3A_VERSION}.jar" for jar in jars):
        raise FileNotFoundError(
            f"Hadoop's S3A jars are not in {folder}: run scripts/fetch-s3a.sh "
            "(or set TRIPFLOW_S3A_JARS)"
        )
    return jars


def build_session(
    master: str | None,
    app_name: str = "tripflow",
    driver_memory: str | None = None,
    extra_conf: dict[str, str] | None = None,
) -> SparkSession:
    """Start (or join) a Spark session configured for tripflow; master None keeps spark-submit's."""
    from pyspark.sql import SparkSession

    for name, value in local_environment().items():
        os.environ.setdefault(name, value)

    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    for key, value in {**APPLICATION_CONF, **SQL_CONF}.items():
        builder = builder.config(key, value)
    if driver_memory is not None:
        # Only honoured when this call launches the JVM (plain Python); under spark-submit
        # the driver is already running and its memory comes from --driver-memory.
        builder = builder.config("spark.driver.memory", driver_memory)
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)

    session = builder.getOrCreate()
    # Spark logs every stage at INFO; the job reports its own results.
    session.sparkContext.setLogLevel("WARN")
    return session


@contextmanager
def quiet_connect() -> Iterator[None]:
    """Import the Spark Connect client inside this block without its pandas warning."""
    with warnings.catch_warnings():
        # PySpark 4.2 warns on import that it does not fully support pandas 3 (the version
        # the lock holds, for the serving copy's tools); the job never converts to pandas.
        warnings.filterwarnings(
            "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
        )
        yield


def connect_session_class() -> type[ConnectSession]:
    """Import the Spark Connect client's session class."""
    with quiet_connect():
        from pyspark.sql.connect.session import SparkSession as ConnectSession
    return ConnectSession


@contextmanager
def functions_for(session: AnySession) -> Iterator[None]:
    """Make pyspark.sql.functions (and Window) build columns for this session's kind inside
    this block."""
    # PySpark decides per call, from SPARK_CONNECT_MODE_ENABLED, whether F.col and friends
    # build Connect or classic columns, and sets it for good once a process opens a Connect
    # session its own way. Setting it only while a Connect session's job is built keeps a
    # classic session in the same process (the tests, a notebook) working before and after.
    if not type(session).__module__.startswith("pyspark.sql.connect"):
        yield
        return
    previous = os.environ.get(_CONNECT_MODE)
    os.environ[_CONNECT_MODE] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[_CONNECT_MODE]
        else:
            os.environ[_CONNECT_MODE] = previous


def connect_session(url: str) -> ConnectSession:
    """Open a new session on a Spark Connect server (`sc://host:port`) with tripflow's settings."""
    # The Connect client's own builder, not pyspark.sql.SparkSession's: that one refuses a
    # remote session in a process that already runs a classic one, and marks the whole
    # process as Connect-only for the sessions built after it.
    builder = connect_session_class().builder.remote(url)
    for key, value in SQL_CONF.items():
        builder = builder.config(key, value)
    return builder.create()
