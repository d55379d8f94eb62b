"""Benchmark: trusted Parquet -> staging_tripdata, tripflow's path against baselines.

Paths, all into the same unlogged staging table of a fresh managed PostgreSQL:
  arrow_copy   tripflow: pyarrow reads Parquet, writes CSV chunks in C++, one COPY
  row_copy     baseline: psycopg COPY fed row by row from Python (write_row)
  spark_jdbc   baseline: Spark JDBC append with reWriteBatchedInserts=true (needs the
               PostgreSQL JDBC jar, /usr/share/java/postgresql.jar from libpostgresql-jdbc-java)

Usage: .venv/bin/python benchmarks/staging_load.py [--rows N]
"""

from __future__ import annotations

import argparse
import random
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from tripflow.config import Settings
from tripflow.lake import Lake
from tripflow.services.postgres import ManagedPostgres
from tripflow.warehouse.database import connect, migrate
from tripflow.warehouse.load import STAGING_COLUMNS, load_staging

JDBC_JAR = Path("/usr/share/java/postgresql.jar")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_parquet(directory: Path, rows: int) -> None:
    """Write `rows` synthetic trusted rows as Parquet."""
    generator = random.Random(7)
    start = datetime(2018, 1, 1)
    seconds = [generator.randrange(365 * 86400) for _ in range(rows)]
    table = pa.table(
        {
            "trip_key": [f"{generator.getrandbits(128):032x}" for _ in range(rows)],
            "region": [generator.choice(["Prague", "Turin", "Hamburg"]) for _ in range(rows)],
            "origin_lon": [generator.uniform(7, 15) for _ in range(rows)],
            "origin_lat": [generator.uniform(44, 54) for _ in range(rows)],
            "destination_lon": [generator.uniform(7, 15) for _ in range(rows)],
            "destination_lat": [generator.uniform(44, 54) for _ in range(rows)],
            "datetime": pa.array(
                [start + timedelta(seconds=s) for s in seconds], pa.timestamp("us")
            ),
            "datasource": [generator.choice(["cheap_mobile", "funny_car"]) for _ in range(rows)],
            "file_id": pa.array([1] * rows, pa.int64()),
        }
    )
    directory.mkdir(parents=True)
    pq.write_table(table, directory / "part-0.parquet", row_group_size=1_000_000)


def timed(name: str, rows: int, action: Callable[[], object], results: dict[str, float]) -> None:
    started = time.perf_counter()
    action()
    results[name] = time.perf_counter() - started
    print(f"{name:12s} {results[name]:8.2f} s {rows / results[name]:12,.0f} rows/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    arguments = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="tripflow-bench-"))
    home.chmod(0o755)
    cluster = ManagedPostgres(Settings(_env_file=None, home=home, database_port=free_port()))
    try:
        cluster.start()
        url = cluster.url()
        migrate(url)
        lake = Lake((home / "lake").as_uri())
        make_parquet(home / "lake" / "trusted", arguments.rows)
        results: dict[str, float] = {}
        with connect(url) as conn:
            conn.execute("INSERT INTO ingestion_batch DEFAULT VALUES")
            conn.commit()

            def truncate() -> None:
                conn.execute("TRUNCATE staging_tripdata")
                conn.execute("UPDATE ingestion_batch SET status = 'processed'")
                conn.commit()

            truncate()
            timed(
                "arrow_copy",
                arguments.rows,
                lambda: load_staging(conn, lake, 1, "trusted"),
                results,
            )
            truncate()

            def row_copy() -> None:
                dataset = pads.dataset(str(home / "lake" / "trusted"), format="parquet")
                columns = ", ".join(STAGING_COLUMNS)
                with (
                    conn.cursor() as cursor,
                    cursor.copy(f"COPY staging_tripdata (batch_id, {columns}) FROM STDIN") as copy,
                ):
                    for chunk in dataset.to_batches(columns=list(STAGING_COLUMNS)):
                        for row in chunk.to_pylist():
                            copy.write_row((1, *row.values()))
                conn.commit()

            timed("row_copy", arguments.rows, row_copy, results)
            truncate()
        if JDBC_JAR.exists():
            from tripflow.spark.session import build_session

            spark = build_session("local[2]", extra_conf={"spark.jars": str(JDBC_JAR)})
            frame = spark.read.parquet(str(home / "lake" / "trusted"))
            frame.count()
            password = url.split(":")[2].split("@")[0]

            def spark_jdbc() -> None:
                (
                    # Spark names the columns in its INSERT, so order does not matter.
                    frame.selectExpr("1L AS batch_id", *STAGING_COLUMNS)
                    .write.format("jdbc")
                    .option(
                        "url",
                        f"jdbc:postgresql://127.0.0.1:{cluster.port}/tripflow"
                        "?reWriteBatchedInserts=true&stringtype=unspecified",
                    )
                    .option("driver", "org.postgresql.Driver")
                    .option("dbtable", "staging_tripdata")
                    .option("user", "tripflow")
                    .option("password", password)
                    .option("batchsize", "10000")
                    .mode("append")
                    .save()
                )

            timed("spark_jdbc", arguments.rows, spark_jdbc, results)
            spark.stop()
        else:
            print(
                f"spark_jdbc   skipped: {JDBC_JAR} missing"
                " (apt-get install libpostgresql-jdbc-java)"
            )
        print()
        for name, seconds in results.items():
            if name != "arrow_copy":
                print(f"speed-up of arrow_copy over {name}: {seconds / results['arrow_copy']:.2f}x")
    finally:
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
