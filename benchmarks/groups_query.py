"""Benchmark: similar-trip groups at scale, kept in the serving copy against the same
groups computed from the trips when asked.

1. Writing: a segment of `--write-rows` trips of the database written with the default
   group grid, and the same rows written with no groups (the baseline): the cost the
   groups add to every publish, sync, merge and rebuild.
2. Asking: a mix of /trip-groups questions answered from the kept groups (answers.
   trip_groups, no answer cache: every run reads the segments), median of `--repeat`
   runs each; and the first question computed from the copy's trips at question time
   (H3 of every trip, then grouped): what keeping them saves.

On the benchmarks' generated database of `--rows` trips (built on first use), or --url.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

from common import chosen_database, files_bytes, ready_serving
from psycopg import sql

from tripflow.answers import Serving, trip_groups
from tripflow.serving.copy import ServingCopy, load_statement
from tripflow.serving.engine import Engine
from tripflow.serving.groups import GroupGrid, GroupQuery, register_cell_function
from tripflow.warehouse.database import connect

QUESTIONS = [
    ("all regions, res 8, 60 min", GroupQuery(8, 60)),
    ("all regions, res 8, 60 min, page 3", GroupQuery(8, 60, offset=40)),
    ("Prague, res 8, 60 min", GroupQuery(8, 60, region="Prague")),
    ("funny_car, res 7, 15 min", GroupQuery(7, 15, datasource="funny_car")),
    ("Turin, res 7, 180 min, >= 5 trips", GroupQuery(7, 180, region="Turin", min_trips=5)),
]
ON_THE_FLY = """
SELECT regions.name AS region, origin_cell, destination_cell, bucket, count(*) AS trips
FROM (
    SELECT region,
        h3_cell(origin_lat, origin_lon, 8) AS origin_cell,
        h3_cell(destination_lat, destination_lon, 8) AS destination_cell,
        (hour(datetime) * 60 + minute(datetime)) // 60 AS bucket
    FROM {alias}.trips
) AS cells
JOIN {alias}.names AS regions ON regions.kind = 'region' AND regions.code = cells.region
GROUP BY ALL
ORDER BY trips DESC, region, origin_cell, destination_cell, bucket
LIMIT 20
"""


def write_segment(url: str, rows: int, grid: GroupGrid, directory: Path) -> tuple[float, int]:
    """Write `rows` trips of the database as one segment with a grid; seconds and bytes."""
    copy = ServingCopy(directory, groups=grid)
    query = sql.SQL(load_statement("export_trips")).format() + sql.SQL(" LIMIT %(rows)s")
    with closing(connect(url)) as conn:
        batches = [int(row[0]) for row in conn.execute("SELECT batch_id FROM ingestion_batch")]
        started = time.perf_counter()
        copy.write_query(conn, "bench", [], query, {"batch_ids": batches, "rows": rows})
        elapsed = time.perf_counter() - started
    return elapsed, files_bytes(directory)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--url", help="a tripflow database instead of the generated one")
    parser.add_argument("--write-rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    url = chosen_database(args.url, args.rows, args.seed, "groups")
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parents[1] / ".bench") as work:
        plain, plain_bytes = write_segment(
            url, args.write_rows, GroupGrid(frozenset(), 15), Path(work) / "plain"
        )
        kept, kept_bytes = write_segment(
            url, args.write_rows, GroupGrid.default(), Path(work) / "kept"
        )
    print(f"\nwriting a segment of {args.write_rows:,} trips (grid: resolutions 8 and 7, 15 min)")
    print(f"  without groups (baseline) {plain:7.1f} s  {plain_bytes / 1e6:8.1f} MB")
    print(f"  with groups               {kept:7.1f} s  {kept_bytes / 1e6:8.1f} MB")
    print(f"  ratio                     {kept / plain:7.2f}x  {kept_bytes / plain_bytes:8.2f}x")

    with closing(connect(url)) as conn:
        serving = ready_serving(conn, url)
        conn.commit()
        # A fresh engine, so the first question also pays for attaching the segments.
        serving = Serving(serving.copy, Engine())
        print(f"\nasking (median of {args.repeat}; first run in brackets)")
        for name, query in QUESTIONS:
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                answer = trip_groups(conn, query, serving=serving)
                times.append(time.perf_counter() - started)
                conn.commit()
            print(
                f"  {name:38s} {statistics.median(times) * 1000:8.1f} ms"
                f"  ({times[0] * 1000:.1f} ms)  {answer['total_groups']:>10,} groups,"
                f" largest {answer['groups'][0]['trips'] if answer['groups'] else 0}"
            )
            if name == QUESTIONS[0][0]:
                kept_first = statistics.median(times)
        cursor, attached = serving.engine.attach(serving.copy.segments())
        register_cell_function(cursor)
        started = time.perf_counter()
        for item in attached:
            cursor.execute(ON_THE_FLY.format(alias=item.alias)).fetchall()
        fly = time.perf_counter() - started
        print(f"  {QUESTIONS[0][0]}, computed from the trips (baseline): {fly * 1000:,.0f} ms")
        print(f"  ratio: kept groups answer {fly / kept_first:,.0f}x faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
