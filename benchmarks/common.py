"""What every benchmark shares: its own managed PostgreSQL, databases, data sets, timing.

Benchmarks keep their state under `.bench/` in the repository (git-ignored), on a port of
their own, so a developer's stack (`.tripflow/`, port 55432) and the test suite never
collide with them. Data sets are built once per (rows, seed) and reused by later runs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import psycopg
from psycopg.conninfo import conninfo_to_dict

from tripflow import pipeline
from tripflow.answers import Serving
from tripflow.config import Settings, SparkRunnerMode
from tripflow.generate import Order, TimeSpan, generate_trips
from tripflow.lake import LANDING, open_lake
from tripflow.services.postgres import ManagedPostgres
from tripflow.serving import maintenance
from tripflow.warehouse.database import connect, migrate

ROOT = Path(__file__).resolve().parent.parent
BENCH_HOME = Path(os.environ.get("TRIPFLOW_BENCH_HOME", ROOT / ".bench"))
BENCH_PORT = int(os.environ.get("TRIPFLOW_BENCH_PORT", "55442"))
# One serving copy and one plain DuckDB database per benchmark database, by its name.
SERVING_HOME = BENCH_HOME / "serving"
PLAIN_DUCKDB_HOME = BENCH_HOME / "plain-duckdb"


def bench_settings(**overrides: Any) -> Settings:
    """Settings of the benchmark home: its own cluster, lake and Spark defaults."""
    values: dict[str, Any] = {"home": BENCH_HOME, "database_port": BENCH_PORT}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def free_port() -> int:
    """Return a TCP port free on loopback right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def warm_stack(settings: Settings) -> Iterator[tuple[pipeline.SparkRunner, Settings]]:
    """Run tripflow's path the way the stack does: with TRIPFLOW_SPARK_RUNNER=connect (the
    default), the stack's programs (the API and the warm Spark Connect server) are started
    under the benchmark home's supervisor on free ports, by the project's own `stack.up`;
    their start is not timed, as in production they are already running. With submit,
    spark-submit per batch and nothing started. Yields the runner and the stack's settings
    (the API's port)."""
    from tripflow.services import spark_connect, stack

    if settings.spark_runner is SparkRunnerMode.SUBMIT:
        yield pipeline.SubmitRunner(settings), settings
        return
    stack_settings = settings.model_copy(
        update={
            "home": BENCH_HOME / "stack",
            "api_port": free_port(),
            "spark_connect_port": free_port(),
        }
    )
    (BENCH_HOME / "stack").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    stack.up(stack_settings, with_airflow=False)
    url = spark_connect.url(stack_settings)
    print(
        f"  (untimed: the stack's API and Spark Connect server ({url}, master "
        f"{settings.spark_master}, driver {settings.driver_memory}) answered after "
        f"{time.perf_counter() - started:.1f} s)"
    )
    try:
        yield pipeline.ConnectRunner(url), stack_settings
    finally:
        stack.stop_supervisor(stack_settings)


def start_cluster(settings: Settings | None = None) -> ManagedPostgres:
    """Start (initialising on first use) the benchmarks' PostgreSQL cluster."""
    BENCH_HOME.mkdir(parents=True, exist_ok=True)
    BENCH_HOME.chmod(0o755)
    cluster = ManagedPostgres(settings or bench_settings())
    cluster.start()
    return cluster


def fresh_database(cluster: ManagedPostgres, name: str, *, migrated: bool = True) -> str:
    """Drop and create database `name`; apply tripflow's migrations unless told not to."""
    with closing(connect(cluster.url("postgres"), autocommit=True)) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = cluster.url(name)
    if migrated:
        migrate(url)
    return url


def database_exists(cluster: ManagedPostgres, name: str) -> bool:
    """Tell whether the cluster has a database `name`."""
    with closing(connect(cluster.url("postgres"), autocommit=True)) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


@dataclass
class Stages:
    """Seconds per named stage of one benchmark path, in the order they ran."""

    rows: int
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the body as stage `name` and print it when it ends."""
        started = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - started
        print(f"    {name:34s} {self.seconds[name]:9.1f} s  {self.rate(name):>12,.0f} rows/s")

    def rate(self, name: str) -> float:
        """Rows per second of one stage."""
        return self.rows / self.seconds[name] if self.seconds[name] else float("inf")

    @property
    def total(self) -> float:
        """Seconds of all stages together."""
        return sum(self.seconds.values())


def generated_csv(
    rows: int,
    seed: int,
    files: int = 1,
    invalid_rate: float = 0.0,
    span: TimeSpan | None = None,
) -> list[Path]:
    """Generate (once, then reuse) `rows` trips as CSV files under .bench/csv/; return them.
    Spread over 2018 (`tripflow generate`'s default), or, given a span, in time order: the
    files share the span one after another."""
    name = f"rows{rows}-seed{seed}-files{files}-inv{invalid_rate}"
    if span is not None:
        name += f"-time-{span.start:%Y%m%dT%H%M%S}-{span.end:%Y%m%dT%H%M%S}"
    directory = BENCH_HOME / "csv" / name
    done = directory / "_DONE"
    if not done.exists():
        shutil.rmtree(directory, ignore_errors=True)
        order: dict[str, Any] = {}
        if span is not None:
            order = {"order": Order.TIME, "start": span.start, "days_per_file": span.days / files}
        summary = generate_trips(
            rows, directory, files=files, seed=seed, invalid_rate=invalid_rate, **order
        )
        print(f"  generated {rows:,} rows in {summary.seconds:.1f} s into {directory}")
        done.write_text(summary.describe())
    return sorted(directory.glob("trips-*.csv"))


def following_span(after: TimeSpan, rows: int, rows_before: int) -> TimeSpan:
    """Return the span of a feed's next `rows` trips: from where `after` ends, at the rate
    of `rows_before` trips over `after` (whole seconds)."""
    seconds = round(after.days * 86_400 * rows / rows_before)
    return TimeSpan(after.end, after.end + timedelta(seconds=max(seconds, 1)))


def trips_database(rows: int, seed: int = 42, files: int | None = None) -> str:
    """Return the URL of a database holding `rows` generated trips, loaded through
    tripflow's own pipeline (Spark, COPY, publish). Built once per (rows, seed)."""

    settings = bench_settings()
    cluster = start_cluster(settings)
    name = f"trips_{rows}_{seed}"
    if database_exists(cluster, name):
        url = cluster.url(name)
        with closing(connect(url)) as conn:
            built = conn.execute(
                "SELECT 1 FROM pg_tables WHERE tablename = 'bench_dataset_complete'"
            ).fetchone()
        if built:
            migrate(url)
            return url
    files = files or max(1, rows // 10_000_000)
    csvs = generated_csv(rows, seed, files=files)
    url = fresh_database(cluster, name)
    lake_dir = BENCH_HOME / "lakes" / name
    shutil.rmtree(lake_dir, ignore_errors=True)
    run_settings = bench_settings(lake_url=f"file://{lake_dir}", database_url=url)
    lake = open_lake(run_settings)
    print(f"  loading {rows:,} trips into {name} through tripflow's pipeline")
    started = time.perf_counter()
    with closing(connect(url)) as conn, warm_stack(run_settings) as (runner, _):
        # One file per batch keeps each publish transaction to at most 10M rows.
        for path in csvs:
            lake.put(path, LANDING)
            pipeline.ingest(conn, lake, runner)
        conn.execute("CREATE TABLE bench_dataset_complete (rows bigint, seed int)")
        conn.execute("INSERT INTO bench_dataset_complete VALUES (%s, %s)", (rows, seed))
        conn.commit()
    with closing(connect(url, autocommit=True)) as conn:
        conn.execute("VACUUM ANALYZE")
    print(f"  loaded in {time.perf_counter() - started:.0f} s")
    return url


def chosen_database(database_url: str | None, rows: int, seed: int, title: str) -> str:
    """Return the database a benchmark runs on: the given one, or the generated data set of
    `rows` trips (built on first use); print which."""
    if database_url:
        print(f"{title} on the given database")
        return database_url
    print(f"{title}: {rows:,} generated trips (seed {seed})")
    return trips_database(rows, seed)


def scalar(conn: psycopg.Connection[Any], query: str) -> Any:
    """Return the first column of the first row of a query."""
    row = conn.execute(query).fetchone()
    return None if row is None else row[0]


def database_name(url: str) -> str:
    """Return the name of the database a PostgreSQL URL points at."""
    return str(conninfo_to_dict(url)["dbname"])


def files_bytes(directory: Path) -> int:
    """Return the bytes of every file under a directory (0 if it does not exist)."""
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def open_serving(directory: Path) -> Serving:
    """Return the serving copy under `directory`, read with tripflow's default settings."""
    return Serving.from_settings(bench_settings(serving_dir=directory))


def ready_serving(conn: psycopg.Connection[Any], url: str) -> Serving:
    """Return the benchmarks' serving copy of a database (.bench/serving/<name>/), rebuilt
    from tripdata first when it is missing or differs from it; print what it took."""
    serving = open_serving(SERVING_HOME / database_name(url))
    directory = serving.copy.directory
    started = time.perf_counter()
    why = ""
    try:
        found = maintenance.check(conn, serving.copy, serving.engine)
    except duckdb.Error as error:
        # Segments written by an older tripflow may lack what today's reader expects.
        why = f"unreadable ({error})"
    else:
        if found.missing_batches:
            why = f"lacks {len(found.missing_batches)} of {found.published} published batches"
        elif found.differences:
            why = f"{len(found.differences)} (region, datasource, week) counts differ"
        elif any(
            segment.rows and segment.groups != serving.copy.groups
            for segment in serving.copy.segments()
        ):
            why = "written without today's similar-trip groups"
    print(f"  serving copy {directory}: checked in {time.perf_counter() - started:.1f} s")
    if why:
        print(f"    {why}: rebuilding it from tripdata")
        started = time.perf_counter()
        rows = maintenance.rebuild(conn, serving.copy)
        print(f"    rebuilt in {time.perf_counter() - started:.1f} s ({rows:,} trips)")
        if not maintenance.check(conn, serving.copy, serving.engine).ok:
            raise RuntimeError(f"the serving copy {directory} still differs after a rebuild")
    print(f"    {files_bytes(directory) / 1e6:,.1f} MB on disk, equal to tripdata")
    return serving


class WarningRecorder(logging.Handler):
    """Keeps the warnings tripflow logs (such as answering from PostGIS because the serving
    copy lacks batches), so that a benchmark can tell it measured something else."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep one record's message."""
        self.messages.append(record.getMessage())

    @classmethod
    def installed(cls) -> WarningRecorder:
        """Return a recorder attached to tripflow's loggers."""
        recorder = cls()
        logging.getLogger("tripflow").addHandler(recorder)
        return recorder

    def take(self) -> list[str]:
        """Return the messages kept since the last call, and forget them."""
        messages, self.messages = self.messages, []
        return messages


def ask_fresh_process(script: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Run a benchmark's one-question script in a fresh Python process: the request as JSON
    on stdin (not the command line, where a database password would show in every process
    listing), its last line of output read back as JSON."""
    completed = subprocess.run(
        [sys.executable, str(script)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{script.name} exited with {completed.returncode}:\n{completed.stderr}")
    result: dict[str, Any] = json.loads(completed.stdout.splitlines()[-1])
    return result
