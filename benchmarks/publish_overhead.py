"""Benchmark: what keeping the serving copy adds to the publish of one large batch.

The trusted Parquet of the query benchmark's data set (one batch of N rows, written by
tripflow's Spark job) is staged into a fresh database and published into an empty,
migrated `tripdata`, twice, each time in a database of its own: once without the serving
copy, once with it (the batch's segment started before the PostgreSQL statement, made
visible before the commit, as `tripflow ingest` and the DAG do). Staging is not timed.
Prints both publish times, the difference and its share (target: at most 10% of the
publish), and the time the segment alone takes when nothing else runs.

Usage: .venv/bin/python benchmarks/publish_overhead.py [--rows N] [--seed S] [--runs R]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

from common import BENCH_HOME, bench_settings, fresh_database, start_cluster, trips_database
from psycopg import conninfo

from tripflow.lake import Lake, trusted_dir
from tripflow.serving.copy import ServingCopy
from tripflow.serving.maintenance import BatchWriter
from tripflow.warehouse.database import connect
from tripflow.warehouse.load import load_staging
from tripflow.warehouse.publish import publish_batch

TARGET_SHARE = 0.10
WORK = BENCH_HOME / "publish-overhead"


def staged_database(name: str, lake: Lake) -> str:
    """Return a fresh migrated database holding batch 1 of the lake, staged."""
    cluster = start_cluster()
    url = fresh_database(cluster, name)
    with closing(connect(url)) as conn:
        conn.execute("INSERT INTO ingestion_batch (status, files) VALUES ('processed', 1)")
        conn.execute(
            "INSERT INTO ingestion_file (batch_id, name, landing_path, size_bytes, checksum,"
            " rows_duplicate) VALUES (1, 'trips.csv', 'landing/trips.csv', 1, 'x', 0)"
        )
        conn.commit()
        load_staging(conn, lake, 1, trusted_dir(1))
    with closing(connect(url, autocommit=True)) as conn:
        conn.execute("CHECKPOINT")
    return url


def timed_publish(url: str, writer: BatchWriter | None) -> float:
    """Publish batch 1 once; return its seconds."""
    with closing(connect(url)) as conn:
        started = time.perf_counter()
        assert publish_batch(conn, 1, writer)
        return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return 1 when the share misses the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="trips in the batch")
    parser.add_argument("--seed", type=int, default=42, help="seed of the generated data set")
    parser.add_argument("--runs", type=int, default=1, help="publishes timed each way")
    args = parser.parse_args(argv)

    source = trips_database(args.rows, args.seed)
    name = conninfo.conninfo_to_dict(source)["dbname"]
    lake = Lake(f"file://{BENCH_HOME / 'lakes' / str(name)}")
    if not Path(lake.full_path(trusted_dir(1))).exists():
        print(
            f"no trusted Parquet of batch 1 in {lake.uri()}: rebuild the data set", file=sys.stderr
        )
        return 2
    settings = bench_settings()
    without, with_copy = [], []
    for run in range(args.runs):
        url = staged_database("publish_overhead_plain", lake)
        without.append(timed_publish(url, None))
        print(f"  run {run + 1}: publish without the copy {without[-1]:7.1f} s", flush=True)
        shutil.rmtree(WORK, ignore_errors=True)
        copy = ServingCopy(
            WORK,
            memory_limit=settings.serving_write_memory_limit,
            threads=settings.serving_threads,
        )
        url = staged_database("publish_overhead_copy", lake)
        with_copy.append(timed_publish(url, BatchWriter(copy, lake)))
        print(f"  run {run + 1}: publish with the copy    {with_copy[-1]:7.1f} s", flush=True)
    shutil.rmtree(WORK, ignore_errors=True)
    alone_copy = ServingCopy(WORK, memory_limit=settings.serving_write_memory_limit)
    started = time.perf_counter()
    files = sorted(Path(lake.full_path(trusted_dir(1))).rglob("*.parquet"))
    segment = alone_copy.prepare_parquet(files).commit("alone", [1])
    alone = time.perf_counter() - started
    size = sum(path.stat().st_size for path in WORK.iterdir()) / 1e6
    shutil.rmtree(WORK, ignore_errors=True)

    plain, kept = statistics.median(without), statistics.median(with_copy)
    share = (kept - plain) / plain
    print(f"\npublish of {args.rows:,} trips into an empty table (median of {args.runs}):")
    print(f"  without the serving copy  {plain:7.1f} s")
    print(f"  with the serving copy     {kept:7.1f} s   (+{kept - plain:.1f} s, {share:+.1%})")
    print(f"  the segment alone         {alone:7.1f} s   ({segment.rows:,} rows, {size:,.0f} MB)")
    verdict = "PASS" if share <= TARGET_SHARE else "SHORT"
    print(f"  target: overhead <= {TARGET_SHARE:.0%} of the publish -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
