"""Build the Spark session every tripflow entry point uses, with the same settings."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession


def build_session(
    master: str | None,
    app_name: str = "tripflow",
    driver_memory: str | None = None,
    extra_conf: dict[str, str] | None = None,
) -> SparkSession:
    """Start (or join) a Spark session configured for tripflow; master None keeps spark-submit's."""
    # Read by the JVM at launch only, so they must be in the environment before the first
    # session. Without SPARK_LOCAL_IP Spark binds the first non-loopback interface (slow or
    # unreachable on laptops and sandboxes); without PYSPARK_PYTHON the Python workers run
    # a system interpreter that lacks the project's packages.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    # Trip datetimes are wall-clock values without zone: a fixed UTC session zone keeps any
    # timestamp conversion from shifting them by the zone of whichever machine runs the job.
    builder = builder.config("spark.sql.session.timeZone", "UTC")
    # Batch jobs have no one watching the UI; it costs a port and startup time.
    builder = builder.config("spark.ui.enabled", "false")
    # The console progress bar fills logs of non-interactive runs with carriage returns.
    builder = builder.config("spark.ui.showConsoleProgress", "false")
    # The default of 200 shuffle partitions means 200 tiny tasks per shuffle for batches of a
    # few files; AQE (on by default) still splits or coalesces partitions by measured size.
    builder = builder.config("spark.sql.shuffle.partitions", "8")
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
