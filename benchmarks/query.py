"""Benchmark: tripflow's weekly average against a brute-force SQL reference, same answers.

For every question of the shared mix (benchmarks/queries_mix.py) it times
`tripflow.warehouse.queries.weekly_average` (two warm-ups, then --repeat timed calls) and a
reference: one plain SQL statement on `tripdata` that tests the box with ST_X/ST_Y BETWEEN
(no GiST operator, so no spatial index), filters region, datasource and the range, groups by
date_trunc('week') and builds the span of weeks itself, as DESIGN.md defines it. Both
answers must agree exactly (span, per-week counts, trips); any difference exits 1.

Usage: .venv/bin/python benchmarks/query.py [--rows N] [--repeat 20] [--database-url URL]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg
from common import chosen_database, scalar
from queries_mix import MIX, Question, check_query_strings

from tripflow.warehouse.database import connect
from tripflow.warehouse.queries import weekly_average
from tripflow.weeks import AreaQuery, Match, WeeklyAverage

WARM_UPS = 2
# p95 targets of the whole mix, in milliseconds, by data set size.
TARGET_P95_MS_UP_TO_10M = 50.0
TARGET_P95_MS_ABOVE_10M = 100.0
TEN_MILLION = 10_000_000

# The definition, straight: bounds under region/datasource only (skipped when the range is
# complete), the span as every Monday from the week of the lower bound to the week of the
# last instant, and per-week counts of the matching trips. Every filter is a bound value; a
# NULL switches it off, and a custom plan folds the switched-off tests away.
REFERENCE_SQL = """
WITH bounds AS (
    SELECT
        coalesce(%(start)s::timestamp, min(datetime)) AS lower,
        coalesce(%(end)s::timestamp - interval '1 microsecond', max(datetime)) AS upper
    FROM tripdata
    WHERE (%(start)s::timestamp IS NULL OR %(end)s::timestamp IS NULL)
      AND (%(region)s::text IS NULL OR region = %(region)s::text)
      AND (%(datasource)s::text IS NULL OR datasource = %(datasource)s::text)
),
span AS (
    SELECT monday::date AS week
    FROM bounds,
        generate_series(date_trunc('week', lower), date_trunc('week', upper), interval '7 days')
            AS monday
    WHERE lower <= upper
),
matching AS (
    SELECT date_trunc('week', datetime)::date AS week, count(*) AS trips
    FROM tripdata
    WHERE (%(region)s::text IS NULL OR region = %(region)s::text)
      AND (%(datasource)s::text IS NULL OR datasource = %(datasource)s::text)
      AND (%(start)s::timestamp IS NULL OR datetime >= %(start)s::timestamp)
      AND (%(end)s::timestamp IS NULL OR datetime < %(end)s::timestamp)
      AND (
          %(min_lon)s::float8 IS NULL
          OR CASE %(match)s::text
              WHEN 'both' THEN
                  ST_X(origin_coord) BETWEEN %(min_lon)s::float8 AND %(max_lon)s::float8
                  AND ST_Y(origin_coord) BETWEEN %(min_lat)s::float8 AND %(max_lat)s::float8
                  AND ST_X(destination_coord) BETWEEN %(min_lon)s::float8 AND %(max_lon)s::float8
                  AND ST_Y(destination_coord) BETWEEN %(min_lat)s::float8 AND %(max_lat)s::float8
              WHEN 'origin' THEN
                  ST_X(origin_coord) BETWEEN %(min_lon)s::float8 AND %(max_lon)s::float8
                  AND ST_Y(origin_coord) BETWEEN %(min_lat)s::float8 AND %(max_lat)s::float8
              WHEN 'destination' THEN
                  ST_X(destination_coord) BETWEEN %(min_lon)s::float8 AND %(max_lon)s::float8
                  AND ST_Y(destination_coord) BETWEEN %(min_lat)s::float8 AND %(max_lat)s::float8
              WHEN 'either' THEN
                  (ST_X(origin_coord) BETWEEN %(min_lon)s::float8 AND %(max_lon)s::float8
                   AND ST_Y(origin_coord) BETWEEN %(min_lat)s::float8 AND %(max_lat)s::float8)
                  OR (ST_X(destination_coord) BETWEEN %(min_lon)s::float8 AND %(max_lon)s::float8
                   AND ST_Y(destination_coord) BETWEEN %(min_lat)s::float8 AND %(max_lat)s::float8)
          END
      )
    GROUP BY 1
)
SELECT
    (SELECT coalesce(array_agg(week ORDER BY week), '{}') FROM span) AS weeks,
    (SELECT coalesce(array_agg(coalesce(matching.trips, 0) ORDER BY span.week), '{}')
     FROM span LEFT JOIN matching USING (week)) AS counts,
    (SELECT coalesce(sum(trips), 0) FROM matching) AS all_matching
"""

SIZES_SQL = """
SELECT c.relname, c.relkind, coalesce(i.indrelid::regclass::text, '') AS table_name,
       pg_total_relation_size(c.oid) AS total_bytes, pg_relation_size(c.oid) AS bytes
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_index AS i ON i.indexrelid = c.oid
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'm', 'i')
ORDER BY c.relkind <> 'r', pg_total_relation_size(c.oid) DESC, c.relname
"""


@dataclass
class Timings:
    """Milliseconds of the timed runs of one question, tripflow's and the reference's."""

    tripflow: list[float] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class ReferenceAnswer:
    """The reference's answer, with the count of matching trips wherever they fell."""

    answer: WeeklyAverage
    all_matching: int


def percentile(values: Sequence[float], share: float) -> float:
    """Return the nearest-rank percentile (`share` in 0..100) of some values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(share / 100 * len(ordered)))
    return ordered[rank - 1]


def reference_parameters(query: AreaQuery) -> dict[str, Any]:
    """Return the bound values of REFERENCE_SQL for a question."""
    box = query.bbox
    return {
        "start": query.start,
        "end": query.end,
        "region": query.region,
        "datasource": query.datasource,
        "min_lon": box.min_lon if box else None,
        "min_lat": box.min_lat if box else None,
        "max_lon": box.max_lon if box else None,
        "max_lat": box.max_lat if box else None,
        "match": str(query.match if box else Match.BOTH),
    }


def reference_weekly_average(conn: psycopg.Connection[Any], query: AreaQuery) -> ReferenceAnswer:
    """Answer a question by brute force in one plain SQL statement."""
    # Never prepared: each run is planned with its own values, the NULL switches folded away.
    row = conn.execute(REFERENCE_SQL, reference_parameters(query), prepare=False).fetchone()
    assert row is not None
    weeks: list[date] = list(row[0])
    counts = {week: int(trips) for week, trips in zip(weeks, row[1], strict=True) if trips}
    return ReferenceAnswer(WeeklyAverage(query, weeks, counts), int(row[2]))


def describe_differences(got: WeeklyAverage, expected: ReferenceAnswer) -> list[str]:
    """Return how tripflow's answer differs from the reference's (empty if it does not)."""
    want = expected.answer
    problems = []
    if want.trips != expected.all_matching:
        problems.append(
            f"reference: {expected.all_matching} matching trips, {want.trips} inside the span"
        )
    if list(got.span) != list(want.span):
        problems.append(f"span: tripflow {_span_text(got.span)}, reference {_span_text(want.span)}")
    if got.trips != want.trips:
        problems.append(f"trips: tripflow {got.trips}, reference {want.trips}")
    weeks = sorted(set(got.span) | set(want.span) | set(got.counts) | set(want.counts))
    differing = [
        f"{week}: {got.counts.get(week, 0)} vs {want.counts.get(week, 0)}"
        for week in weeks
        if got.counts.get(week, 0) != want.counts.get(week, 0)
    ]
    if differing:
        shown = ", ".join(differing[:8]) + (" ..." if len(differing) > 8 else "")
        problems.append(f"{len(differing)} weekly counts differ (tripflow vs reference): {shown}")
    if got.to_json() != want.to_json() and not problems:
        problems.append("the JSON answers differ")
    return problems


def _span_text(span: Sequence[date]) -> str:
    if not span:
        return "empty"
    return f"{span[0]}..{span[-1]} ({len(span)} weeks)"


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    """Run `call` once; return its milliseconds and its result."""
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def benchmark_question(
    conn: psycopg.Connection[Any], question: Question, repeat: int, reference_repeat: int
) -> tuple[Timings, WeeklyAverage, ReferenceAnswer | None, list[str]]:
    """Time one question both ways; return the timings, both answers and the differences."""
    timings = Timings()
    answers: list[WeeklyAverage] = []
    for _ in range(WARM_UPS):
        answers.append(weekly_average(conn, question.query))
    for _ in range(repeat):
        milliseconds, answer = timed(lambda: weekly_average(conn, question.query))
        timings.tripflow.append(milliseconds)
        answers.append(answer)
    references: list[ReferenceAnswer] = []
    for _ in range(reference_repeat):
        milliseconds, reference = timed(lambda: reference_weekly_average(conn, question.query))
        timings.reference.append(milliseconds)
        references.append(reference)
    first = answers[0]
    if not references:
        # --reference-repeat 0: timings only, nothing to compare with.
        return timings, first, None, []
    expected = references[0]
    problems = describe_differences(first, expected)
    # Every run must give the same answer, not only the first.
    if any(answer.to_json() != first.to_json() for answer in answers[1:]):
        problems.append("tripflow's answers differ between runs")
    if any(item != expected for item in references[1:]):
        problems.append("the reference's answers differ between runs")
    return timings, first, expected, problems


def print_sizes(conn: psycopg.Connection[Any]) -> int:
    """Print the sizes of the tables and indexes of the public schema; return tripdata's rows."""
    rows = int(scalar(conn, "SELECT count(*) FROM tripdata"))
    print(f"\ntripdata rows: {rows:,}")
    print(f"{'relation':44s} {'kind':6s} {'of table':18s} {'size':>11s} {'with indexes':>13s}")
    for name, kind, table, total_bytes, own_bytes in conn.execute(SIZES_SQL):
        label = {"r": "table", "p": "table", "m": "matview", "i": "index"}[kind]
        total = "" if kind == "i" else _megabytes(total_bytes)
        print(f"{name:44s} {label:6s} {table:18s} {_megabytes(own_bytes):>11s} {total:>13s}")
    return rows


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def target_p95_ms(rows: int) -> float:
    """Return the p95 target of the mix for a data set of `rows` trips."""
    return TARGET_P95_MS_UP_TO_10M if rows <= TEN_MILLION else TARGET_P95_MS_ABOVE_10M


def main(argv: Sequence[str] | None = None) -> int:
    """Run the query benchmark; return 1 if any answer differs from the reference."""
    parser = argparse.ArgumentParser(
        description="Weekly average: tripflow against a brute-force SQL reference."
    )
    parser.add_argument("--rows", type=int, default=TEN_MILLION, help="trips in the data set")
    parser.add_argument("--seed", type=int, default=42, help="seed of the generated data set")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per question")
    parser.add_argument(
        "--reference-repeat",
        type=int,
        default=3,
        help="timed reference runs per question (0: time tripflow only, compare nothing)",
    )
    parser.add_argument(
        "--database-url", help="benchmark this existing database instead of a generated one"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.reference_repeat < 0:
        parser.error("--repeat must be at least 1 and --reference-repeat at least 0")

    check_query_strings(MIX)
    url = chosen_database(args.database_url, args.rows, args.seed, "query benchmark")

    mismatches: dict[str, list[str]] = {}
    all_timings: dict[str, Timings] = {}
    with closing(connect(url, autocommit=True)) as conn:
        rows = print_sizes(conn)
        print(
            f"\n{len(MIX)} questions; tripflow: {WARM_UPS} warm-ups + {args.repeat} timed runs "
            f"each; reference: {args.reference_repeat} timed runs each\n"
        )
        header = (
            f"{'question':30s} {'trips':>10s} {'weeks':>5s} {'p50 ms':>8s} {'p95 ms':>8s} "
            f"{'ref p50 ms':>10s} {'speedup':>8s}"
        )
        print(header)
        print("-" * len(header))
        for question in MIX:
            timings, answer, _, problems = benchmark_question(
                conn, question, args.repeat, args.reference_repeat
            )
            all_timings[question.name] = timings
            ours, theirs = percentile(timings.tripflow, 50), percentile(timings.reference, 50)
            flag = "  MISMATCH" if problems else ""
            print(
                f"{question.name:30s} {answer.trips:>10,} {answer.weeks:>5} {ours:>8.2f} "
                f"{percentile(timings.tripflow, 95):>8.2f} {theirs:>10.2f} "
                f"{theirs / ours:>7.1f}x{flag}",
                flush=True,
            )
            if problems:
                mismatches[question.name] = problems

    ours_all = [ms for timings in all_timings.values() for ms in timings.tripflow]
    theirs_all = [ms for timings in all_timings.values() for ms in timings.reference]
    p50, p95 = percentile(ours_all, 50), percentile(ours_all, 95)
    ref_p50, ref_p95 = percentile(theirs_all, 50), percentile(theirs_all, 95)
    target = target_p95_ms(args.rows if not args.database_url else rows)
    print(f"\nwhole mix ({len(ours_all)} tripflow runs, {len(theirs_all)} reference runs):")
    print(f"  tripflow   p50 {p50:9.2f} ms   p95 {p95:9.2f} ms")
    print(f"  reference  p50 {ref_p50:9.2f} ms   p95 {ref_p95:9.2f} ms")
    print(f"  reference / tripflow: p50 {ref_p50 / p50:.1f}x, p95 {ref_p95 / p95:.1f}x")
    verdict = "PASS" if p95 <= target else "SHORT"
    print(f"  target: p95 <= {target:.0f} ms at {rows:,} rows -> {verdict}")

    if not theirs_all:
        print("\nno reference runs (--reference-repeat 0): answers not compared")
        return 0
    if mismatches:
        print(f"\n{len(mismatches)} questions answered differently from the reference:")
        for name, problems in mismatches.items():
            query = next(item.query for item in MIX if item.name == name)
            print(f"  {name}: {query.to_json()}")
            for problem in problems:
                print(f"    {problem}")
        return 1
    print(f"\nall {len(MIX)} answers identical to the reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
