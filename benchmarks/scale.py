"""The scale run: generate N trips and ingest them through tripflow's pipeline, batch by batch.

Generates `--files` CSV files, each just before its batch, and moves each into the lake's
landing directory when complete, then ingests them one batch per file with the library
calls the CLI and the DAG use (Spark on the stack's warm Connect server, COPY, publish,
archive), while the stack's API is asked questions twice a second (every answer counted by
status: the target is no 503). `--order time` (the
default) makes the files follow each other in time, the way a feed arrives: file k holds
the k-th of `--files` equal spans of 2018; `--order spread` spreads every file over the
whole year (each batch touches every week: the worst case for a table partitioned by time).
`--increment M` then ingests two more batches of M trips into the full table: M
time-ordered trips of the days right after 2018 (at the run's rate of trips per day), and
the same M spread over 2018 that `benchmarks/ingest.py` loads as its spread increment (seed
43, the same file into 10M there), and prints their ratio. After each batch it
records every stage's seconds and rows/s, the table and
index sizes, the disk left and the peak memory seen, as one JSON line in
`.bench/scale-<rows>.jsonl`, and prints a table. Afterwards run the query benchmark on the
same database: the last line printed is the command.

Usage: .venv/bin/python benchmarks/scale.py --rows 100000000 --files 10 [--order time|spread]
           [--increment 1000000] [--drop-processed] [--resume]
       (`make bench-scale ROWS=100000000`)

The whole run's seconds (generation and ingest, from the start of this process, so a
resumed run counts only its own part) are printed at the end against issue 11's 45 minutes.

`--drop-processed` deletes each batch's CSV and trusted Parquet once the batch is done,
where disk is short: the product keeps both (processed files for the record, Parquet to
re-stage after a crash), and an operator may delete them once a batch is done.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from common import (
    BENCH_HOME,
    bench_settings,
    following_span,
    fresh_database,
    generated_csv,
    start_cluster,
    warm_stack,
)

from tripflow import pipeline
from tripflow.generate import (
    YEAR,
    GenerationSummary,
    Order,
    TimeSpan,
    file_spans,
    generate_trips,
)
from tripflow.lake import LANDING, PROCESSED, open_lake
from tripflow.serving.copy import ServingCopy
from tripflow.warehouse.database import connect


class MemoryWatch:
    """Sample the machine's used memory every second; keep the peak."""

    def __init__(self) -> None:
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            memory = psutil.virtual_memory()
            self.peak_bytes = max(self.peak_bytes, memory.total - memory.available)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def sizes(conn: Any) -> dict[str, int]:
    """Bytes of tripdata's heap and indexes (over its week partitions), its partitions, and
    the summary's bytes."""
    row = conn.execute(
        "SELECT coalesce(sum(table_bytes), 0), coalesce(sum(index_bytes), 0), count(*),"
        " pg_total_relation_size('trip_week_summary') FROM tripdata_partitions"
    ).fetchone()
    table, indexes, partitions, summary = row
    return {
        "tripdata": int(table),
        "tripdata_indexes": int(indexes),
        "partitions": int(partitions),
        "trip_week_summary": int(summary),
    }


class ApiWatch(threading.Thread):
    """Ask the stack's API a rotating set of questions twice a second for the whole run and
    count the answers by HTTP status: the run's target is no 503 (or any error) at all."""

    QUESTIONS = (
        "/weekly-average?bbox=14.2,49.9,14.7,50.2",
        "/weekly-average?region=Prague",
        "/weekly-average?bbox=7.6,45.0,7.7,45.1&match=either",
        "/weekly-average?bbox=14.40,50.05,14.45,50.10&from=2018-03-01&to=2018-06-01",
        "/regions",
    )

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.statuses: dict[int, int] = {}
        self.slowest = 0.0
        self.stopped = threading.Event()

    def run(self) -> None:
        import urllib.error
        import urllib.request

        for path in itertools.cycle(self.QUESTIONS):
            if self.stopped.wait(0.5):
                return
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(self.base_url + path, timeout=30) as response:
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
            except OSError:
                status = 0  # no answer at all
            self.slowest = max(self.slowest, time.perf_counter() - started)
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def describe(self) -> str:
        """Say how the API answered."""
        asked = sum(self.statuses.values())
        failed = asked - self.statuses.get(200, 0)
        statuses = dict(sorted(self.statuses.items()))
        return (
            f"API during the run: {asked:,} questions, statuses {statuses}"
            f" (0: no answer), {failed} not answered 200, slowest {self.slowest * 1000:.0f} ms"
        )


# Issue 11: generate + ingest of the whole 100M run, time-ordered, within 45 minutes.
TARGET_SECONDS = 45 * 60
# Seed of benchmarks/ingest.py's spread increment (its --seed 42 + 1): the same batch.
INGEST_INCREMENT_SEED = 43


@dataclass(frozen=True)
class Planned:
    """One batch of the run: its label, rows and how to write its one CSV file into a
    directory (returning what was generated, or None when an existing file was copied)."""

    label: str
    rows: int
    write: Callable[[Path], GenerationSummary | None]


def plan_batches(rows: int, files: int, seed: int, order: Order, increment: int) -> list[Planned]:
    """Return the run's batches in order: its files, then the increments if asked for."""
    sizes_of_files = [rows // files] * files
    sizes_of_files[-1] += rows - sum(sizes_of_files)
    spans = file_spans(files) if order is Order.TIME else [YEAR] * files
    planned: list[Planned] = []
    for number, (file_rows, span) in enumerate(zip(sizes_of_files, spans, strict=True), start=1):

        def write(
            directory: Path, file_rows: int = file_rows, span: TimeSpan = span, number: int = number
        ) -> GenerationSummary:
            if order is Order.SPREAD:
                return generate_trips(file_rows, directory, seed=seed + number)
            return generate_trips(
                file_rows,
                directory,
                seed=seed + number,
                order=Order.TIME,
                start=span.start,
                days_per_file=span.days,
            )

        planned.append(Planned(f"{order} {span.start:%Y-%m-%d %H:%M}", file_rows, write))
    if increment:
        after = following_span(YEAR, increment, rows)

        def write_following(directory: Path) -> GenerationSummary:
            return generate_trips(
                increment,
                directory,
                seed=seed + files + 1,
                order=Order.TIME,
                start=after.start,
                days_per_file=after.days,
            )

        def copy_spread(directory: Path) -> None:
            (source,) = generated_csv(increment, INGEST_INCREMENT_SEED)
            directory.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, directory / source.name)

        planned.append(
            Planned(f"+time {after.start:%Y-%m-%d} {after.days:g} d", increment, write_following)
        )
        planned.append(Planned("+spread 2018", increment, copy_spread))
    return planned


def main() -> None:
    run_started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument(
        "--order",
        choices=list(Order),
        default=Order.TIME,
        type=Order,
        help="time (default): the files follow each other over 2018, as a feed; spread: "
        "every file over the whole year",
    )
    parser.add_argument(
        "--increment",
        type=int,
        default=0,
        help="after the run, ingest this many time-ordered trips, then as many spread over "
        "2018 (default 0: none)",
    )
    parser.add_argument("--drop-processed", action="store_true")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run: keep its database and lake, finish the batch it "
        "was in, then go on with the next files",
    )
    arguments = parser.parse_args()

    name = f"scale_{arguments.rows}"
    cluster = start_cluster()
    lake_dir = BENCH_HOME / "lakes" / name
    if arguments.resume:
        url = cluster.url(name)
    else:
        url = fresh_database(cluster, name)
        shutil.rmtree(lake_dir, ignore_errors=True)
        shutil.rmtree(BENCH_HOME / "serving" / name, ignore_errors=True)
    settings = bench_settings(
        lake_url=f"file://{lake_dir}", database_url=url, serving_dir=BENCH_HOME / "serving" / name
    )
    lake = open_lake(settings)
    landing = Path(lake.full_path(LANDING))
    results = BENCH_HOME / f"scale-{arguments.rows}.jsonl"
    if not arguments.resume:
        results.unlink(missing_ok=True)
    with closing(connect(url)) as conn:
        done, unfinished = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'done'),"
            " count(*) FILTER (WHERE status NOT IN ('done', 'failed')) FROM ingestion_batch"
        ).fetchone() or (0, 0)
    print(
        f"scale run: {arguments.rows:,} trips in {arguments.files} files, {arguments.order} "
        f"order -> {name}"
    )
    print(f"  machine: {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.1f} GiB")

    # One file per batch, generated just before its batch (never while one runs), so
    # disk holds one raw file at a time with --drop-processed.
    planned = plan_batches(
        arguments.rows, arguments.files, arguments.seed, arguments.order, arguments.increment
    )
    generated_seconds = 0.0
    generated_rows = 0
    generated_bytes = 0
    waiting = BENCH_HOME / "scale-generating"
    shutil.rmtree(waiting, ignore_errors=True)
    header = (
        f"{'batch':>5} {'file':>22} {'rows':>12} {'stored':>13} {'spark s':>8} {'copy s':>7} "
        f"{'publish s':>9} {'total s':>8} {'rows/s':>8} {'table GB':>8} {'indexes GB':>10} "
        f"{'disk free GB':>12}"
    )
    print(header)
    totals: dict[str, float] = {}
    run_seconds = 0.0
    with (
        MemoryWatch() as memory,
        closing(connect(url)) as conn,
        warm_stack(settings) as (runner, stack_settings),
    ):
        api = ApiWatch(f"http://127.0.0.1:{stack_settings.api_port}")
        api.start()
        for number, batch in enumerate(planned, start=1):
            file_rows = batch.rows
            if number <= done:
                continue
            target = landing / f"part-{number:03d}.csv"
            if not (unfinished and number == done + 1):
                shutil.rmtree(waiting, ignore_errors=True)
                made = batch.write(waiting)
                if made is not None:
                    generated_seconds += made.seconds
                    generated_rows += file_rows
                    generated_bytes += made.bytes
                landing.mkdir(parents=True, exist_ok=True)
                (written,) = sorted(waiting.glob("trips-*.csv"))
                written.rename(target)
            stages: dict[str, float] = {}
            marks: list[tuple[str, float]] = [("claim", time.perf_counter())]

            def on_step(_: int, step: str, marks: list[tuple[str, float]] = marks) -> None:
                marks.append((step, time.perf_counter()))

            batch_ids = pipeline.ingest(
                conn,
                lake,
                runner,
                on_step,
                max_attempts=1,
                serving=ServingCopy.from_settings(settings),
            )
            marks.append(("end", time.perf_counter()))
            for (step, begun), (_, ended) in itertools.pairwise(marks):
                stages[step] = stages.get(step, 0.0) + ended - begun
            status = conn.execute(
                "SELECT status, rows_loaded FROM ingestion_batch WHERE batch_id = %s",
                (batch_ids[-1],),
            ).fetchone()
            conn.commit()
            if status is None or status[0] != "done":
                raise SystemExit(f"batch {batch_ids} ended as {status}")
            stored = conn.execute("SELECT coalesce(sum(trips), 0) FROM trip_week_summary")
            stored_rows = int(stored.fetchone()[0])
            conn.commit()
            relation_sizes = sizes(conn)
            conn.commit()
            if arguments.drop_processed:
                for path in Path(lake.full_path(PROCESSED)).rglob(target.name):
                    path.unlink()
                shutil.rmtree(lake.full_path(pipeline.trusted_dir(batch_ids[-1])))
            total = marks[-1][1] - marks[0][1]
            record = {
                "batch": batch_ids[-1],
                "file": batch.label,
                "order": str(arguments.order),
                "rows": file_rows,
                "stored": stored_rows,
                "seconds": stages,
                "total_seconds": total,
                "sizes": relation_sizes,
                "disk_free": shutil.disk_usage(BENCH_HOME).free,
                "peak_used_memory": memory.peak_bytes,
                "peak_child_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
                "api_statuses": dict(api.statuses),
            }
            with results.open("a") as output:
                output.write(json.dumps(record) + "\n")
            table = relation_sizes["tripdata"]
            indexes = relation_sizes["tripdata_indexes"]
            totals[batch.label] = total
            if number == arguments.files:
                run_seconds = time.perf_counter() - run_started
            print(
                f"{record['batch']:>5} {batch.label:>22} {file_rows:>12,} {stored_rows:>13,} "
                f"{stages.get('spark', 0):>8.0f} {stages.get('staging', 0):>7.0f} "
                f"{stages.get('publish', 0):>9.0f} {total:>8.0f} {file_rows / total:>8,.0f} "
                f"{table / 1e9:>8.1f} {indexes / 1e9:>10.1f} "
                f"{record['disk_free'] / 1e9:>12.1f}",
                flush=True,
            )
        print(
            f"  generated {generated_bytes / 2**30:.1f} GiB of CSV in {generated_seconds:.0f} s "
            f"({generated_rows / max(generated_seconds, 1e-9):,.0f} rows/s)"
        )
        api.stopped.set()
        api.join()
        print(f"  {api.describe()}")
        print(
            f"  peak memory used on the machine: {memory.peak_bytes / 2**30:.1f} GiB; "
            f"largest child process RSS: "
            f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20:.1f} GiB"
        )
    with closing(connect(url, autocommit=True)) as conn:
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE tripdata")
        print(f"  VACUUM ANALYZE tripdata: {time.perf_counter() - started:.0f} s")
    increments = [label for label in totals if label.startswith("+")]
    if len(increments) == 2:
        ordered, spread = (totals[label] for label in increments)
        print(
            f"  increments of {arguments.increment:,} trips into {arguments.rows:,}: "
            f"time-ordered {ordered:.1f} s (issue 11 target at 1M into 100M: <= 30 s, "
            f"{ordered / 30:.2f}x), spread {spread:.1f} s; time / spread {ordered / spread:.2f}x"
        )
    if run_seconds:
        print(
            f"  the run's {arguments.files} files, generated and ingested by this process: "
            f"{run_seconds:.0f} s = {run_seconds / 60:.1f} min, "
            f"{run_seconds / TARGET_SECONDS:.2f}x issue 11's 45 min"
            + (" (resumed: earlier batches not counted)" if done else "")
        )
    print(f"results: {results}")
    print(f"next: .venv/bin/python benchmarks/query.py --database-url '{url}'")


if __name__ == "__main__":
    main()
