"""Benchmark: tripflow's weekly average against two baselines, with the same answers.

For every question of the shared mix (benchmarks/queries_mix.py: the fixed questions and
the random boxes) it measures three ways of answering:

- tripflow: `tripflow.answers.weekly_average` with the benchmark's serving copy
  (.bench/serving/<database>/, rebuilt from tripdata whenever it is missing or differs).
  By default cold, the way the target is set: the question asked once to a fresh process
  (benchmarks/cold_answer.py), so no cache of any kind helps; next to it, for reference,
  the median of --repeat warm calls in this process after two warm-ups. With --warm, the
  warm calls are the measurement (p50/p95 over all of them).
- plain DuckDB (baselines.py): the trips in one DuckDB table in no useful order
  (.bench/plain-duckdb/<database>.duckdb), one straightforward statement per question,
  timed the same way as tripflow (cold, or warm with --warm).
- brute force (baselines.REFERENCE_SQL): one plain SQL statement on tripdata that tests the
  box with ST_X/ST_Y BETWEEN, --reference-repeat runs in this process (0 skips it).

tripflow's answers must equal both baselines' exactly (span, per-week counts, trips), and
its cold and warm answers each other; any difference exits 1.

Usage: .venv/bin/python benchmarks/query.py [--rows N] [--repeat 20] [--reference-repeat 3]
           [--warm] [--database-url URL]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import psycopg
from baselines import (
    BaselineAnswer,
    open_plain_duckdb,
    plain_weekly_average,
    ready_plain_duckdb,
    reference_weekly_average,
)
from cold_answer import ask_plain_duckdb, ask_tripflow
from common import (
    PLAIN_DUCKDB_HOME,
    WarningRecorder,
    bench_settings,
    chosen_database,
    database_name,
    ready_serving,
    scalar,
)
from queries_mix import FIXED, MIX, RANDOM, Question, check_query_strings

from tripflow import answers
from tripflow.warehouse.database import connect
from tripflow.weeks import WeeklyAverage

WARM_UPS = 2
# Cold p95 targets of the whole mix, in milliseconds, by data set size.
TARGET_P95_MS_UP_TO_10M = 25.0
TARGET_P95_MS_ABOVE_10M = 100.0
TEN_MILLION = 10_000_000

SIZES_SQL = """
SELECT c.relname, c.relkind, coalesce(i.indrelid::regclass::text, '') AS table_name,
       pg_total_relation_size(c.oid) AS total_bytes, pg_relation_size(c.oid) AS bytes
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_index AS i ON i.indexrelid = c.oid
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'm', 'i')
ORDER BY c.relkind <> 'r', pg_total_relation_size(c.oid) DESC, c.relname
"""

T = TypeVar("T")


@dataclass
class Stores:
    """Everything a question is asked through, and how it is timed."""

    conn: psycopg.Connection[Any]
    url: str
    serving: answers.Serving
    plain_path: Path
    plain: duckdb.DuckDBPyConnection
    threads: int
    memory_limit: str
    cold: bool
    repeat: int
    reference_repeat: int
    warnings: WarningRecorder


@dataclass
class Measured:
    """Milliseconds of one question per way of answering, and how the answers differed."""

    question: Question
    answer: WeeklyAverage | None = None
    cold: list[float] = field(default_factory=list)
    # Milliseconds of the fresh processes' start-up (warm-up, or opening plain DuckDB).
    startup: list[float] = field(default_factory=list)
    plain_startup: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    plain: list[float] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def tripflow(self) -> list[float]:
        """Return tripflow's measured runs: the cold one, or the warm ones with --warm."""
        return self.cold or self.warm


def percentile(values: Sequence[float], share: float) -> float:
    """Return the nearest-rank percentile (`share` in 0..100) of some values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(share / 100 * len(ordered)))
    return ordered[rank - 1]


def describe_differences(got: WeeklyAverage, expected: BaselineAnswer, label: str) -> list[str]:
    """Return how tripflow's answer differs from a baseline's (empty if it does not)."""
    want = expected.answer
    problems = []
    if want.trips != expected.all_matching:
        problems.append(
            f"{label}: {expected.all_matching} matching trips, {want.trips} inside the span"
        )
    if list(got.span) != list(want.span):
        problems.append(f"span: tripflow {_span_text(got.span)}, {label} {_span_text(want.span)}")
    if got.trips != want.trips:
        problems.append(f"trips: tripflow {got.trips}, {label} {want.trips}")
    weeks = sorted(set(got.span) | set(want.span) | set(got.counts) | set(want.counts))
    differing = [
        f"{week}: {got.counts.get(week, 0)} vs {want.counts.get(week, 0)}"
        for week in weeks
        if got.counts.get(week, 0) != want.counts.get(week, 0)
    ]
    if differing:
        shown = ", ".join(differing[:8]) + (" ..." if len(differing) > 8 else "")
        problems.append(f"{len(differing)} weekly counts differ (tripflow vs {label}): {shown}")
    if got.to_json() != want.to_json() and not problems:
        problems.append(f"the JSON answers differ (tripflow vs {label})")
    return problems


def _span_text(span: Sequence[date]) -> str:
    if not span:
        return "empty"
    return f"{span[0]}..{span[-1]} ({len(span)} weeks)"


def timed(call: Callable[[], T]) -> tuple[float, T]:
    """Run `call` once; return its milliseconds and its result."""
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def repeated(call: Callable[[], T], repeat: int, times: list[float]) -> list[T]:
    """Call `call` WARM_UPS times untimed, then `repeat` times timed into `times`; return
    every result."""
    results = [call() for _ in range(WARM_UPS)]
    for _ in range(repeat):
        milliseconds, result = timed(call)
        times.append(milliseconds)
        results.append(result)
    return results


def benchmark_question(stores: Stores, question: Question) -> Measured:
    """Ask one question every way; return the timings and how the answers differ."""
    query = question.query
    measured = Measured(question)
    ours: list[WeeklyAverage] = []
    plain: list[BaselineAnswer] = []
    warnings: list[str] = []
    if stores.cold:
        cold = ask_tripflow(stores.url, stores.serving.copy.directory, query)
        measured.cold.append(cold.milliseconds)
        measured.startup.append(cold.startup_milliseconds)
        ours.append(cold.answer)
        warnings += cold.warnings
        cold = ask_plain_duckdb(stores.plain_path, stores.threads, stores.memory_limit, query)
        measured.plain.append(cold.milliseconds)
        measured.plain_startup.append(cold.startup_milliseconds)
        assert cold.all_matching is not None
        plain.append(BaselineAnswer(cold.answer, cold.all_matching))
    ours += repeated(
        lambda: answers.weekly_average(stores.conn, query, serving=stores.serving),
        stores.repeat,
        measured.warm,
    )
    if not stores.cold:
        plain += repeated(
            lambda: plain_weekly_average(stores.plain, query), stores.repeat, measured.plain
        )
    references: list[BaselineAnswer] = []
    # No warm-ups: a brute-force run takes seconds and the first is no slower than the rest.
    for _ in range(stores.reference_repeat):
        milliseconds, reference = timed(lambda: reference_weekly_average(stores.conn, query))
        measured.reference.append(milliseconds)
        references.append(reference)

    warnings += stores.warnings.take()
    if warnings:
        # The answers may still be right, but not from the serving copy this measures.
        measured.problems += [f"tripflow warned: {message}" for message in warnings]
    first = measured.answer = ours[0]
    # Every run must give the same answer, cold or warm, not only the first.
    if any(answer.to_json() != first.to_json() for answer in ours[1:]):
        measured.problems.append("tripflow's answers differ between runs (cold and warm)")
    measured.problems += describe_differences(first, plain[0], "plain DuckDB")
    if any(item != plain[0] for item in plain[1:]):
        measured.problems.append("plain DuckDB's answers differ between runs")
    if references:
        measured.problems += describe_differences(first, references[0], "brute force")
        if any(item != references[0] for item in references[1:]):
            measured.problems.append("brute force's answers differ between runs")
    return measured


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


def format_ms(value: float) -> str:
    """Return milliseconds as printed in the tables ("-" for none)."""
    return "-" if math.isnan(value) else f"{value:,.1f}"


def format_ratio(slower: float, faster: float) -> str:
    """Return how many times `faster` is faster ("-" when either is missing)."""
    if math.isnan(slower) or math.isnan(faster) or faster <= 0:
        return "-"
    return f"{slower / faster:,.1f}x"


def p50_p95(values: Sequence[float]) -> str:
    """Return "p50 X ms, p95 Y ms" of some milliseconds."""
    return f"p50 {format_ms(percentile(values, 50))} ms, p95 {format_ms(percentile(values, 95))} ms"


def target_p95_ms(rows: int) -> float:
    """Return the cold p95 target of the mix for a data set of `rows` trips."""
    return TARGET_P95_MS_UP_TO_10M if rows <= TEN_MILLION else TARGET_P95_MS_ABOVE_10M


def target_line(p95: float, rows: int, *, cold: bool = True) -> str:
    """Return the verdict line of the cold p95 target for a mix's p95."""
    target = target_p95_ms(rows)
    verdict = "PASS" if p95 <= target else "SHORT"
    size = "10M" if rows <= TEN_MILLION else "100M"
    return (
        f"  target: cold p95 <= {target:.0f} ms at {size} ({rows:,} trips here): "
        f"{'' if cold else 'warm, not cold: '}p95 {format_ms(p95)} ms -> {verdict}"
    )


def print_row(measured: Measured, width: int, cold: bool) -> None:
    """Print one question's answer size, timings and ratios."""
    assert measured.answer is not None
    ours = percentile(measured.tripflow, 50)
    second = statistics.median(measured.warm) if cold else percentile(measured.warm, 95)
    plain = percentile(measured.plain, 50)
    brute = percentile(measured.reference, 50)
    flag = "  MISMATCH" if measured.problems else ""
    print(
        f"{measured.question.name:{width}s} {measured.answer.trips:>10,} "
        f"{measured.answer.weeks:>5} {format_ms(ours):>9s} {format_ms(second):>9s} "
        f"{format_ms(plain):>9s} {format_ms(brute):>9s} "
        f"{format_ratio(plain, ours):>9s} {format_ratio(brute, ours):>9s}{flag}",
        flush=True,
    )


def print_summary(results: list[Measured], cold: bool, rows: int) -> None:
    """Print p50/p95 of the whole mix per way of answering, their ratios and the target."""
    pooled: dict[str, list[float]] = {
        "tripflow": [ms for item in results for ms in item.tripflow],
        "warm": [ms for item in results for ms in item.warm],
        "plain": [ms for item in results for ms in item.plain],
        "brute": [ms for item in results for ms in item.reference],
    }
    p50 = {name: percentile(values, 50) for name, values in pooled.items()}
    p95 = {name: percentile(values, 95) for name, values in pooled.items()}
    how = "cold (one fresh process per question)" if cold else "warm (in this process)"
    print(
        f"\nwhole mix: {len(results)} questions ({len(FIXED)} fixed, {len(RANDOM)} random "
        f"boxes); tripflow and plain DuckDB {how}"
    )
    print(f"  {'':26s} {'runs':>6s} {'p50 ms':>9s} {'p95 ms':>9s}")
    labels = {
        "tripflow": f"tripflow {'cold' if cold else 'warm'}",
        "warm": "tripflow warm (in-process)",
        "plain": f"plain DuckDB {'cold' if cold else 'warm'}",
        "brute": "brute force (PostGIS)",
    }
    for name, label in labels.items():
        if name == "warm" and not cold:
            continue
        shown = f"{format_ms(p50[name]):>9s} {format_ms(p95[name]):>9s}"
        print(f"  {label:26s} {len(pooled[name]):>6} {shown}")
    for name, label in (("plain", "plain DuckDB"), ("brute", "brute force")):
        print(
            f"  {label} / tripflow: p50 {format_ratio(p50[name], p50['tripflow'])}, "
            f"p95 {format_ratio(p95[name], p95['tripflow'])}"
        )
    if cold:
        for label, values in (
            ("tripflow", [ms for item in results for ms in item.startup]),
            ("plain DuckDB", [ms for item in results for ms in item.plain_startup]),
        ):
            print(
                f"  start-up of each fresh process, not in the times above ({label}): "
                + p50_p95(values)
            )
    for part, questions in (("fixed", FIXED), ("random", RANDOM)):
        names = {item.name for item in questions}
        values = [ms for item in results if item.question.name in names for ms in item.tripflow]
        print(f"  tripflow, {len(questions)} {part} questions: {p50_p95(values)}")
    print(target_line(p95["tripflow"], rows, cold=cold))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the query benchmark; return 1 if any answer differs."""
    parser = argparse.ArgumentParser(
        description="Weekly average: tripflow (cold) against plain DuckDB and brute force."
    )
    parser.add_argument("--rows", type=int, default=TEN_MILLION, help="trips in the data set")
    parser.add_argument("--seed", type=int, default=42, help="seed of the generated data set")
    parser.add_argument(
        "--repeat", type=int, default=20, help="timed warm runs per question (after 2 warm-ups)"
    )
    parser.add_argument(
        "--reference-repeat",
        type=int,
        default=3,
        help="timed brute-force runs per question (0: skip brute force; answers are still "
        "compared with plain DuckDB)",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="measure repeated warm calls in this process instead of one cold process per question",
    )
    parser.add_argument(
        "--database-url", help="benchmark this existing database instead of a generated one"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.reference_repeat < 0:
        parser.error("--repeat must be at least 1 and --reference-repeat at least 0")

    check_query_strings(MIX)
    url = chosen_database(args.database_url, args.rows, args.seed, "query benchmark")
    settings = bench_settings()
    cold = not args.warm
    results: list[Measured] = []
    with closing(connect(url, autocommit=True)) as conn:
        rows = print_sizes(conn)
        print()
        serving = ready_serving(conn, url)
        plain_path = PLAIN_DUCKDB_HOME / f"{database_name(url)}.duckdb"
        started = time.perf_counter()
        ready_plain_duckdb(conn, plain_path)
        print(
            f"  plain DuckDB {plain_path}: ready in {time.perf_counter() - started:.1f} s, "
            f"{plain_path.stat().st_size / 1e6:,.1f} MB on disk"
        )
        plain = open_plain_duckdb(
            plain_path, settings.serving_threads, settings.serving_memory_limit
        )
        stores = Stores(
            conn,
            url,
            serving,
            plain_path,
            plain,
            settings.serving_threads,
            settings.serving_memory_limit,
            cold=cold,
            repeat=args.repeat,
            reference_repeat=args.reference_repeat,
            warnings=WarningRecorder.installed(),
        )
        with closing(plain):
            timing = (
                f"cold: one fresh process per question; warm ms: median of {args.repeat} runs"
                if cold
                else f"warm: {args.repeat} runs"
            )
            print(
                f"\n{len(MIX)} questions; tripflow and plain DuckDB {timing} in this process "
                f"after {WARM_UPS} warm-ups; brute force: {args.reference_repeat} runs each\n"
            )
            width = max(len(item.name) for item in MIX)
            first, second = ("cold ms", "warm ms") if cold else ("p50 ms", "p95 ms")
            header = (
                f"{'question':{width}s} {'trips':>10s} {'weeks':>5s} {first:>9s} {second:>9s} "
                f"{'plain ms':>9s} {'brute ms':>9s} {'plain/tf':>9s} {'brute/tf':>9s}"
            )
            print(header)
            print("-" * len(header))
            for question in MIX:
                measured = benchmark_question(stores, question)
                results.append(measured)
                print_row(measured, width, cold)

    print_summary(results, cold, rows)
    mismatches = [item for item in results if item.problems]
    if mismatches:
        print(f"\n{len(mismatches)} questions answered differently:")
        for item in mismatches:
            print(f"  {item.question.name}: {item.question.query.to_json()}")
            for problem in item.problems:
                print(f"    {problem}")
        return 1
    compared = "plain DuckDB and brute force" if args.reference_repeat else "plain DuckDB"
    print(f"\nall {len(MIX)} tripflow answers identical to {compared}")
    if not args.reference_repeat:
        print("(no brute-force runs: --reference-repeat 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
