"""Benchmark: one generated trip CSV into PostGIS three ways, fresh and incremental.

Paths, each in its own database of the benchmarks' cluster (same server settings,
tripflow.services.postgres.SERVER_SETTINGS), run one after another, never at once:
  tripflow  (a) the pipeline: the CSV is put into a fresh lake's landing dir and
            `pipeline.ingest` claims it, validates it with spark-submit (CSV -> trusted
            Parquet), COPYs the Parquet into staging and publishes into `tripdata`
            (INSERT ... ON CONFLICT into a migrated table whose primary key, GiST and btree
            indexes are already there: tripflow's steady state), then archives the file.
            Stages are the pipeline's steps, timed between its on_step callbacks; `claim`
            runs from the call until the Spark step starts.
  seed      (b) the seed's path, faithfully: a fresh Python process starts a SparkSession
            (local[2], tripflow's driver memory, the PostgreSQL JDBC jar), reads the CSV as
            strings, writes Parquet, reads it back and appends it over JDBC with default
            options to `seed_staging`; then INSERT INTO seed_trips SELECT ... ST_GeomFromText;
            on a fresh load it then builds GiST indexes on both points and a btree on
            datetime.
  floor     (c) the least time any path can take: one COPY of the CSV file, fed in 8 MiB
            blocks, into an UNLOGGED, unindexed table of text columns.

Scenarios, one after another into the same tables:
  fresh           N rows spread over 2018 into empty tables (seed: indexes built after the
                  INSERT);
  increment       M new trips spread over the whole of 2018 (another generator seed, so none
                  repeats) into the tables that hold what came before: tripflow ingests
                  another file, the seed's INSERT maintains the indexes it built, the floor
                  COPYs into the same table. The worst case for a table partitioned by time;
  increment-time  M new trips in time order, as a live feed delivers them: the days right
                  after 2018 at the fresh load's rate of trips per day (N trips a year:
                  1M after 100M is 3.65 days), or `--increment-days` long; another seed.
`--increment-order` picks the increments and their order (default `spread,time`: both, the
spread one first, so it goes into exactly N rows as in earlier figures and the time-ordered
one into N + M).

Between paths the loaded database gets VACUUM ANALYZE and the cluster a CHECKPOINT (both
untimed), so one path's dirty pages, WAL and autovacuum work are not billed to the next.
The ratios: speed-up of tripflow over the seed = seed total / tripflow total (targets of
issue 11: 1.5x fresh, 3x the spread increment), tripflow total / floor total (how many times
the floor), and tripflow's time-ordered increment / its spread increment of the same size
(target of issue 11 at 1M into 100M: the time-ordered one <= 30 s end to end).
Row counts of the three final tables must be equal (and equal to the rows generated);
otherwise the benchmark exits 1.

Usage: .venv/bin/python benchmarks/ingest.py [--rows N] [--increment M] [--seed S]
           [--increment-order spread,time] [--increment-days D]
           [--paths tripflow,seed,floor] [--keep]
`make bench-ingest ROWS=N` runs it (after scripts/bench-setup.sh installed the JDBC jar).
TRIPFLOW_BENCH_HOME and TRIPFLOW_BENCH_PORT move the benchmarks' home and cluster.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from common import (
    BENCH_HOME,
    Stages,
    bench_settings,
    following_span,
    fresh_database,
    generated_csv,
    start_cluster,
    warm_stack,
)
from psycopg import conninfo, sql

from tripflow import pipeline
from tripflow.config import Settings, SparkRunnerMode
from tripflow.generate import YEAR, Order, TimeSpan
from tripflow.lake import LANDING, open_lake
from tripflow.services.postgres import ManagedPostgres
from tripflow.serving.copy import ServingCopy
from tripflow.warehouse import ingestions
from tripflow.warehouse.database import connect

JDBC_JAR = Path("/usr/share/java/postgresql.jar")
SQL_FILE = Path(__file__).resolve().parent / "sql" / "ingest_baselines.sql"
# Where this benchmark keeps its lake and the seed's Parquet (the CSVs are shared, in csv/).
WORK = BENCH_HOME / "ingest"
SEED_MASTER = "local[2]"
COPY_BLOCK = 8 * 1024 * 1024
# One CSV file per 10M rows, as benchmarks/common.py's data sets: a publish transaction
# stays at most 10M rows.
ROWS_PER_FILE = 10_000_000


class Scenario(StrEnum):
    """What the tables hold before the load."""

    FRESH = "fresh"
    INCREMENT = "increment"
    INCREMENT_TIME = "increment-time"


# The increment scenario of each generator order.
INCREMENTS = {Order.SPREAD: Scenario.INCREMENT, Order.TIME: Scenario.INCREMENT_TIME}


class LoadPath(StrEnum):
    """One way from the CSV into PostgreSQL."""

    TRIPFLOW = "tripflow"
    SEED = "seed"
    FLOOR = "floor"


DATABASES = {
    LoadPath.TRIPFLOW: "bench_ingest_tripflow",
    LoadPath.SEED: "bench_ingest_seed",
    LoadPath.FLOOR: "bench_ingest_floor",
}
LETTERS = {LoadPath.TRIPFLOW: "(a)", LoadPath.SEED: "(b)", LoadPath.FLOOR: "(c)"}
TABLES = {
    LoadPath.TRIPFLOW: "tripdata",
    LoadPath.SEED: "seed_trips",
    LoadPath.FLOOR: "floor_trips",
}
# Speed-up of tripflow over the seed's path that each scenario should reach (issue 11).
TARGETS = {Scenario.FRESH: 1.5, Scenario.INCREMENT: 3.0}
# Issue 11: 1M time-ordered rows into 100M within this many seconds, end to end.
TIME_ORDERED_TARGET_SECONDS = 30.0

# Stage names of tripflow's pipeline steps, keyed by the on_step step name.
STEP_STAGES = {
    "claimed": "claim (checksum, bookkeeping)",
    "spark": "spark (CSV->Parquet)",
    "staging": "staging (Parquet -> COPY)",
    "publish": "publish (INSERT ... ON CONFLICT)",
    "archive": "archive (move the file)",
}
SEED_SESSION = "Spark session start"
SEED_PARQUET = "CSV -> Parquet"
SEED_JDBC = "Parquet -> JDBC seed_staging"
SEED_INSERT = "INSERT ... ST_GeomFromText"
SEED_INDEXES = {
    "seed_index_origin": "index: GiST origin_coord",
    "seed_index_destination": "index: GiST destination_coord",
    "seed_index_datetime": "index: btree datetime",
}
FLOOR_COPY = "COPY (UNLOGGED, text, no index)"


class BenchmarkError(RuntimeError):
    """A path did not load what it was given."""


def load_statements(path: Path) -> dict[str, str]:
    """Return the named statement groups of a .sql file (`-- name: x` starts group x)."""
    parts = re.split(r"^-- name: (\w+)[ \t]*$", path.read_text(), flags=re.MULTILINE)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


STATEMENTS = load_statements(SQL_FILE)


def print_total(stages: Stages) -> None:
    """Print a path's total as one more stage line."""
    rate = stages.rows / stages.total if stages.total else float("inf")
    print(f"    {'total':34s} {stages.total:9.1f} s  {rate:>12,.0f} rows/s")


class Loader(Protocol):
    """One path into its own database."""

    path: LoadPath
    url: str

    def load(self, scenario: Scenario, csvs: Sequence[Path], rows: int) -> Stages:
        """Load the CSV files (`rows` trips) and return the time of each stage."""


class StepTimer:
    """Time tripflow's pipeline steps as stages, from its on_step callbacks."""

    def __init__(self, stages: Stages) -> None:
        self.stages = stages
        self.current = ExitStack()
        self.batches: set[int] = set()

    def start(self) -> None:
        """Start timing the claim, which on_step reports only once it is done."""
        self.current.enter_context(self.stages.stage(STEP_STAGES["claimed"]))

    def __call__(self, batch_id: int, step: str) -> None:
        self.batches.add(batch_id)
        if step == "claimed":
            return
        self.current.close()
        self.current.enter_context(self.stages.stage(STEP_STAGES.get(step, step)))

    def stop(self) -> None:
        """End the last step's stage."""
        self.current.close()


class TripflowLoader:
    """Path (a): tripflow's own pipeline, into a migrated database and a fresh lake."""

    path = LoadPath.TRIPFLOW

    def __init__(self, cluster: ManagedPostgres, spark_runner: SparkRunnerMode) -> None:
        self.url = fresh_database(cluster, DATABASES[self.path], migrated=True)
        lake_dir = WORK / "lake"
        shutil.rmtree(lake_dir, ignore_errors=True)
        lake_dir.mkdir(parents=True)
        shutil.rmtree(WORK / "serving", ignore_errors=True)
        self.settings = bench_settings(
            lake_url=f"file://{lake_dir}",
            database_url=self.url,
            serving_dir=WORK / "serving",
            spark_runner=spark_runner,
        )
        self.lake = open_lake(self.settings)
        # Replaced by the warm stack's runner in main() with TRIPFLOW_SPARK_RUNNER=connect.
        self.runner: pipeline.SparkRunner = pipeline.SubmitRunner(self.settings)

    def load(self, scenario: Scenario, csvs: Sequence[Path], rows: int) -> Stages:
        """Land the files and run `pipeline.ingest` over them."""
        started = time.perf_counter()
        for csv in csvs:
            self.lake.put(csv, LANDING, name=f"{scenario}-{csv.name}")
        print(
            f"    (untimed: {len(csvs)} file(s) put into the lake's landing dir in "
            f"{time.perf_counter() - started:.1f} s)"
        )
        stages = Stages(rows)
        timer = StepTimer(stages)
        with closing(connect(self.url)) as conn:
            timer.start()
            try:
                # The serving copy too, as `tripflow ingest` and the DAG keep it.
                touched = pipeline.ingest(
                    conn,
                    self.lake,
                    self.runner,
                    timer,
                    serving=ServingCopy.from_settings(self.settings),
                )
            finally:
                timer.stop()
            if len(touched) != 1:
                raise BenchmarkError(f"tripflow ran batches {touched}, expected one new batch")
            summary = ingestions.batch_summary(conn, touched[0])
        print(
            f"    batch {summary['batch_id']}: status {summary['status']}, read "
            f"{summary['rows_read']:,}, loaded {summary['rows_loaded']:,}, rejected "
            f"{summary['rows_rejected']:,}, duplicate {summary['rows_duplicate']:,}"
        )
        if summary["status"] != ingestions.Status.DONE or summary["rows_loaded"] != rows:
            raise BenchmarkError(f"tripflow loaded {summary['rows_loaded']} of {rows} rows")
        return stages


@dataclass(frozen=True)
class SeedSparkJob:
    """The seed's Spark part for one load, as the child process receives it."""

    csvs: tuple[str, ...]
    parquet_dir: str
    jdbc_url: str
    user: str
    password: str
    rows: int
    master: str
    driver_memory: str
    log: str


def run_seed_spark(job: SeedSparkJob) -> dict[str, float]:
    """Run the seed's Spark part in this fresh process; return the seconds of its stages."""
    # The JVM writes to file descriptors 1 and 2: send both to the log, keep the stage lines
    # on the benchmark's own output.
    console = os.fdopen(os.dup(1), "w", buffering=1)
    with open(job.log, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    sys.stdout = console
    # Without it Spark binds the first non-loopback interface, slow or unreachable here.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    stages = Stages(job.rows)
    with stages.stage(SEED_SESSION):
        from pyspark.sql import SparkSession

        spark = (
            SparkSession.builder.master(job.master)
            .appName("seed-ingest")
            .config("spark.driver.memory", job.driver_memory)
            .config("spark.jars", str(JDBC_JAR))
            # As tripflow's spark-submit: nobody watches the UI, neither path pays for it.
            .config("spark.ui.enabled", "false")
            .getOrCreate()
        )
    try:
        with stages.stage(SEED_PARQUET):
            frame = spark.read.option("header", "true").csv(list(job.csvs))
            frame.write.mode("overwrite").parquet(job.parquet_dir)
        with stages.stage(SEED_JDBC):
            (
                spark.read.parquet(job.parquet_dir)
                .write.format("jdbc")
                .option("url", job.jdbc_url)
                .option("driver", "org.postgresql.Driver")
                .option("dbtable", "seed_staging")
                .option("user", job.user)
                .option("password", job.password)
                .mode("append")
                .save()
            )
    finally:
        spark.stop()
    console.flush()
    return stages.seconds


class SeedLoader:
    """Path (b): the seed's Spark -> Parquet -> JDBC staging -> ST_GeomFromText INSERT."""

    path = LoadPath.SEED

    def __init__(self, cluster: ManagedPostgres, driver_memory: str) -> None:
        self.url = fresh_database(cluster, DATABASES[self.path], migrated=False)
        self.driver_memory = driver_memory
        with closing(connect(self.url, autocommit=True)) as conn:
            conn.execute(STATEMENTS["seed_tables"])

    def spark_job(self, scenario: Scenario, csvs: Sequence[Path], rows: int) -> SeedSparkJob:
        """Describe the Spark part of one load."""
        parts = conninfo.conninfo_to_dict(self.url)
        parquet_dir = WORK / "seed-parquet" / scenario
        shutil.rmtree(parquet_dir, ignore_errors=True)
        log = BENCH_HOME / "logs" / f"ingest-seed-{scenario}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        return SeedSparkJob(
            csvs=tuple(str(csv) for csv in csvs),
            parquet_dir=str(parquet_dir),
            jdbc_url=f"jdbc:postgresql://{parts['host']}:{parts['port']}/{parts['dbname']}",
            user=str(parts["user"]),
            password=str(parts["password"]),
            rows=rows,
            master=SEED_MASTER,
            driver_memory=self.driver_memory,
            log=str(log),
        )

    def load(self, scenario: Scenario, csvs: Sequence[Path], rows: int) -> Stages:
        """Run the Spark part in a child process, then the INSERT and (fresh) the indexes."""
        with closing(connect(self.url, autocommit=True)) as conn:
            conn.execute(STATEMENTS["seed_clear_staging"])
        job = self.spark_job(scenario, csvs, rows)
        stages = Stages(rows)
        # A new process per load, as the seed's script: every load starts its own JVM.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as executor:
            try:
                stages.seconds.update(executor.submit(run_seed_spark, job).result())
            except Exception:
                tail = Path(job.log).read_text(errors="replace").splitlines()[-20:]
                print(f"    the seed's Spark part failed; log {job.log}:", *tail, sep="\n      ")
                raise
        with closing(connect(self.url, autocommit=True)) as conn:
            with stages.stage(SEED_INSERT):
                conn.execute(STATEMENTS["seed_insert"])
            if scenario is Scenario.FRESH:
                for statement, stage in SEED_INDEXES.items():
                    with stages.stage(stage):
                        conn.execute(STATEMENTS[statement])
        return stages


class FloorLoader:
    """Path (c): one COPY of the CSV into an unlogged, unindexed table of text columns."""

    path = LoadPath.FLOOR

    def __init__(self, cluster: ManagedPostgres) -> None:
        self.url = fresh_database(cluster, DATABASES[self.path], migrated=False)
        with closing(connect(self.url, autocommit=True)) as conn:
            conn.execute(STATEMENTS["floor_table"])

    def load(self, scenario: Scenario, csvs: Sequence[Path], rows: int) -> Stages:
        """COPY each file (one here unless it holds over 10M rows) in large blocks."""
        stages = Stages(rows)
        with closing(connect(self.url)) as conn, stages.stage(FLOOR_COPY):
            with conn.cursor() as cursor:
                for csv in csvs:
                    with cursor.copy(STATEMENTS["floor_copy"]) as copy, csv.open("rb") as handle:
                        while block := handle.read(COPY_BLOCK):
                            copy.write(block)
            conn.commit()
        return stages


def settle(cluster: ManagedPostgres, database: str | None) -> None:
    """VACUUM ANALYZE a database just loaded, then CHECKPOINT the cluster (untimed)."""
    started = time.perf_counter()
    with closing(connect(cluster.url(database or "postgres"), autocommit=True)) as conn:
        if database:
            conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
    what = "VACUUM ANALYZE + CHECKPOINT" if database else "CHECKPOINT"
    print(
        f"    (untimed: {what}, {time.perf_counter() - started:.1f} s: its WAL and dirty"
        " pages do not bill the next path)"
    )


def count_rows(url: str, table: str) -> int:
    """Return the number of rows of a table."""
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
    with closing(connect(url)) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def ratio(numerator: float, denominator: float) -> float:
    """Return numerator / denominator, infinite for a zero denominator."""
    return numerator / denominator if denominator else float("inf")


def print_ratios(scenario: Scenario, results: dict[LoadPath, Stages]) -> None:
    """Print tripflow's speed-up over the seed and its multiple of the floor."""
    tripflow = results.get(LoadPath.TRIPFLOW)
    seed = results.get(LoadPath.SEED)
    floor = results.get(LoadPath.FLOOR)
    if tripflow and seed:
        speedup = ratio(seed.total, tripflow.total)
        target = TARGETS.get(scenario)
        verdict = "" if target is None else "PASS" if speedup >= target else "SHORT"
        print(
            f"  speed-up (a) tripflow over (b) seed: {speedup:.2f}x (seed {seed.total:.1f} s"
            f" / tripflow {tripflow.total:.1f} s)"
            + ("" if target is None else f"; target >= {target:g}x: {verdict}")
        )
    if tripflow and floor:
        print(
            f"  (a) tripflow / (c) floor: {ratio(tripflow.total, floor.total):.1f}x the floor"
            f" (tripflow {tripflow.total:.1f} s / floor {floor.total:.1f} s)"
        )


def print_order_ratio(results: dict[Scenario, dict[LoadPath, Stages]], rows: int) -> None:
    """Print each path's time-ordered increment against its spread one, and tripflow's
    time-ordered increment against issue 11's 30 s (set for 1M rows into 100M)."""
    spread = results.get(Scenario.INCREMENT, {})
    ordered = results.get(Scenario.INCREMENT_TIME, {})
    for path, stages in ordered.items():
        if path in spread:
            print(
                f"  {LETTERS[path]} {path}: time-ordered increment / spread increment "
                f"{ratio(stages.total, spread[path].total):.2f}x ({stages.total:.1f} s / "
                f"{spread[path].total:.1f} s)"
            )
    tripflow = ordered.get(LoadPath.TRIPFLOW)
    if tripflow:
        scaled = "" if (rows, tripflow.rows) == (100_000_000, 1_000_000) else " (not that size)"
        print(
            f"  (a) tripflow time-ordered increment: {tripflow.total:.1f} s = "
            f"{tripflow.total / TIME_ORDERED_TARGET_SECONDS:.2f}x issue 11's "
            f"{TIME_ORDERED_TARGET_SECONDS:g} s for 1M into 100M{scaled}"
        )


def check_counts(scenario: Scenario, counts: dict[LoadPath, int], expected: int) -> bool:
    """Print the row counts of the final tables; tell whether all equal the rows loaded."""
    for path, count in counts.items():
        print(f"  rows in {DATABASES[path]}.{TABLES[path]}: {count:,}")
    equal = all(count == expected for count in counts.values())
    print(
        f"  row counts after {scenario}: "
        + ("equal" if equal else f"NOT EQUAL (expected {expected:,} in every table)")
    )
    return equal


def print_summary(
    results: dict[Scenario, dict[LoadPath, Stages]],
    counts: dict[Scenario, dict[LoadPath, int]],
) -> None:
    """Print one compact table of every path and scenario, then the ratios."""
    print("\nsummary")
    columns = ("rows", "seconds", "rows/s", "in table")
    print(f"  {'scenario':14s} {'path':9s} " + " ".join(f"{name:>12s}" for name in columns))
    for scenario, by_path in results.items():
        for path, stages in by_path.items():
            print(
                f"  {scenario:14s} {path:9s} {stages.rows:12,d} {stages.total:12.1f}"
                f" {ratio(stages.rows, stages.total):12,.0f} {counts[scenario][path]:12,d}"
            )
    print(f"  {'scenario':14s} {'speed-up (b)/(a)':>17s}   target  result  (a)/(c)")
    for scenario, by_path in results.items():
        tripflow = by_path.get(LoadPath.TRIPFLOW)
        seed = by_path.get(LoadPath.SEED)
        floor = by_path.get(LoadPath.FLOOR)
        target = TARGETS.get(scenario)
        speedup = ratio(seed.total, tripflow.total) if tripflow and seed else None
        verdict = ""
        if speedup is not None and target is not None:
            verdict = "PASS" if speedup >= target else "SHORT"
        shown = "-" if speedup is None else f"{speedup:.2f}x"
        wanted = "-" if target is None else f">= {target:g}x"
        floor_ratio = f"{ratio(tripflow.total, floor.total):.1f}x" if tripflow and floor else "-"
        print(f"  {scenario:14s} {shown:>17s} {wanted:>8s} {verdict:>7s} {floor_ratio:>8s}")


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join((__doc__ or "").splitlines()[1:]),
    )
    parser.add_argument(
        "--spark-runner",
        type=SparkRunnerMode,
        choices=list(SparkRunnerMode),
        default=SparkRunnerMode.CONNECT,
        help="how tripflow's path runs Spark: connect (the stack's warm server, started "
        "untimed, as `tripflow up` keeps it; default) or submit (spark-submit per batch)",
    )
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the fresh load")
    parser.add_argument(
        "--increment", type=int, help="new rows of the incremental load (default rows // 10)"
    )
    parser.add_argument("--seed", type=int, default=42, help="generator seed of the fresh rows")
    parser.add_argument(
        "--increment-order",
        default="spread,time",
        help="the increments to run, in this order: spread (over 2018), time (the days after "
        "2018, as a feed), or both comma-separated (default: spread,time)",
    )
    parser.add_argument(
        "--increment-days",
        type=float,
        help="days the time-ordered increment covers (default: at the fresh rows' rate, "
        "increment / rows * 365)",
    )
    parser.add_argument(
        "--paths",
        default=",".join(LoadPath),
        help="comma-separated subset of tripflow,seed,floor (default: all three)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the three databases, the lake and the Parquet"
    )
    arguments = parser.parse_args(argv)
    if arguments.rows < 1:
        parser.error("--rows must be at least 1")
    if arguments.increment is None:
        arguments.increment = max(arguments.rows // 10, 1)
    if arguments.increment < 1:
        parser.error("--increment must be at least 1")
    orders = [name.strip() for name in arguments.increment_order.split(",") if name.strip()]
    if not orders or sorted(set(orders) - set(Order)) or len(set(orders)) < len(orders):
        parser.error(f"--increment-order takes spread, time or both, got {orders}")
    arguments.increment_order = [Order(name) for name in orders]
    if arguments.increment_days is not None and arguments.increment_days * 86_400 < 1:
        parser.error("--increment-days must be at least a second")
    names = [name.strip() for name in arguments.paths.split(",") if name.strip()]
    unknown = sorted(set(names) - set(LoadPath))
    if unknown or not names:
        parser.error(f"--paths takes a subset of {','.join(LoadPath)}, got {arguments.paths!r}")
    arguments.paths = [path for path in LoadPath if path in names]
    return arguments


def increment_span(rows: int, increment: int, days: float | None) -> TimeSpan:
    """Return the days a time-ordered increment covers: right after 2018, `days` long or at
    the rate of `rows` trips a year."""
    if days is not None:
        return TimeSpan(YEAR.end, YEAR.end + timedelta(seconds=round(days * 86_400)))
    return following_span(YEAR, increment, rows)


def build_loaders(
    cluster: ManagedPostgres,
    settings: Settings,
    paths: Sequence[LoadPath],
    spark_runner: SparkRunnerMode,
) -> list[Loader]:
    """Create each selected path's fresh database and tables."""
    loaders: list[Loader] = []
    for path in paths:
        if path is LoadPath.TRIPFLOW:
            loaders.append(TripflowLoader(cluster, spark_runner))
        elif path is LoadPath.SEED:
            loaders.append(SeedLoader(cluster, settings.driver_memory))
        else:
            loaders.append(FloorLoader(cluster))
    return loaders


def drop_databases(cluster: ManagedPostgres, paths: Sequence[LoadPath]) -> None:
    """Drop the paths' databases and this benchmark's lake and Parquet."""
    with closing(connect(cluster.url("postgres"), autocommit=True)) as conn:
        for path in paths:
            name = sql.Identifier(DATABASES[path])
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
    shutil.rmtree(WORK, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every selected path through both scenarios; return the exit status."""
    arguments = parse_arguments(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        # Stage lines appear as they end, also when the output goes to a pipe.
        sys.stdout.reconfigure(line_buffering=True)
    paths: list[LoadPath] = arguments.paths
    if LoadPath.SEED in paths and not JDBC_JAR.exists():
        print(f"{JDBC_JAR} is missing: run `make bench-setup`", file=sys.stderr)
        return 2
    rows, increment = arguments.rows, arguments.increment
    settings = bench_settings()
    print(
        f"ingest benchmark: {rows:,} fresh rows, then {increment:,} new rows "
        f"({', '.join(arguments.increment_order)}); paths "
        f"{', '.join(paths)}; benchmark home {BENCH_HOME}, port {settings.database_port}"
    )
    tripflow_spark = (
        "the stack's warm Spark Connect server"
        if arguments.spark_runner is SparkRunnerMode.CONNECT
        else "spark-submit per batch"
    )
    print(
        f"  tripflow: {tripflow_spark}, --master {settings.spark_master} --driver-memory "
        f"{settings.driver_memory}; seed: SparkSession {SEED_MASTER}, driver memory "
        f"{settings.driver_memory}, {JDBC_JAR}, JDBC append with default options; "
        "floor: COPY into an UNLOGGED table"
    )
    fresh_csvs = generated_csv(rows, arguments.seed, files=max(1, rows // ROWS_PER_FILE))
    loads: list[tuple[Scenario, list[Path], int, int]] = [(Scenario.FRESH, fresh_csvs, rows, rows)]
    expected = rows
    for order in arguments.increment_order:
        span = increment_span(rows, increment, arguments.increment_days)
        files = max(1, increment // ROWS_PER_FILE)
        if order is Order.SPREAD:
            # The same file whatever --rows: the same batch into 10M and into 100M.
            csvs = generated_csv(increment, arguments.seed + 1, files=files)
        else:
            csvs = generated_csv(increment, arguments.seed + 2, files=files, span=span)
            print(
                f"  time-ordered increment: {span.start} .. {span.end} ({span.days:g} days, "
                f"{increment / span.days:,.0f} trips a day)"
            )
        expected += increment
        loads.append((INCREMENTS[order], csvs, increment, expected))
    cluster = start_cluster(settings)
    results: dict[Scenario, dict[LoadPath, Stages]] = {}
    counts: dict[Scenario, dict[LoadPath, int]] = {}
    equal = True
    warm = ExitStack()
    try:
        loaders = build_loaders(cluster, settings, paths, arguments.spark_runner)
        for loader in loaders:
            if isinstance(loader, TripflowLoader):
                loader.runner, _ = warm.enter_context(warm_stack(loader.settings))
        settle(cluster, None)
        for scenario, csvs, new_rows, expected in loads:
            print(f"\n{scenario}: {new_rows:,} rows ({', '.join(csv.name for csv in csvs)})")
            results[scenario] = {}
            for loader in loaders:
                print(f"  {LETTERS[loader.path]} {loader.path}")
                stages = loader.load(scenario, csvs, new_rows)
                print_total(stages)
                results[scenario][loader.path] = stages
                settle(cluster, DATABASES[loader.path])
            counts[scenario] = {
                loader.path: count_rows(loader.url, TABLES[loader.path]) for loader in loaders
            }
            print_ratios(scenario, results[scenario])
            equal = check_counts(scenario, counts[scenario], expected) and equal
            if scenario is Scenario.INCREMENT_TIME:
                print_order_ratio(results, rows)
        print_summary(results, counts)
        print_order_ratio(results, rows)
    finally:
        warm.close()
        if arguments.keep:
            print(f"\nkept databases {', '.join(DATABASES[path] for path in paths)} and {WORK}")
        else:
            drop_databases(cluster, paths)
    if not equal:
        print("FAIL: the paths' tables do not hold the same rows", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
