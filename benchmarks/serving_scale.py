"""Benchmark: the serving copy's answer times at 100M trips, without PostgreSQL.

Loading 100M trips into PostGIS takes hours; the serving copy alone takes minutes. So this
benchmark builds the copy straight from generated CSV files and answers the shared question
mix (benchmarks/queries_mix.py) with tripflow's own path minus PostgreSQL: the plan from
the weekly summary (`plan_question`), the counts in the segments (`Engine.count_groups`),
the answer (`Plan.answer`).

How the data set is built, once per (rows, seed), then reused while complete:

- `rows` generated trips as CSV (benchmarks/common.py's cache), one file per 10M rows;
- each file as one published batch: parsed in DuckDB as the Spark job keeps it (typed,
  each trip once on all five columns, within the file and against earlier files), written
  as Parquet as the batch's trusted Parquet would be, then made a segment by the copy's
  own writer (`ServingCopy.prepare_parquet`, `Prepared.commit`), under
  .bench/serving-scale/rows<N>-seed<S>/copy/;
- the same trips, in no useful order (as the de-duplication leaves them), in the plain
  DuckDB baseline of benchmarks/baselines.py
  (.bench/plain-duckdb/scale-rows<N>-seed<S>.duckdb); its table also tells which trips
  earlier files already held;
- the weekly summary (trip_week_summary's rows) computed from the segments themselves and
  kept as JSON beside the copy, so a cold process reads it as an API worker reads it from
  PostgreSQL, once.

Each question is timed cold, as benchmarks/cold_answer.py does: one fresh process
(benchmarks/serving_scale_answer.py) that first loads the summary and attaches the
segments (an API worker's start-up, reported apart) and then times one plan + count +
answer; warm, the median of 5 runs in this process after 2 warm-ups; and plain DuckDB's
statement cold in a fresh process (benchmarks/cold_answer.py). Every tripflow answer must
equal plain DuckDB's: any difference exits 1.

Usage: .venv/bin/python benchmarks/serving_scale.py [--rows 100000000] [--seed 42]
           [--rows-per-file 10000000] [--drop-csv]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
from baselines import PLAIN_COLUMNS, BaselineAnswer
from cold_answer import ask_plain_duckdb
from common import BENCH_HOME, PLAIN_DUCKDB_HOME, bench_settings, files_bytes, generated_csv
from queries_mix import FIXED, MIX, RANDOM, Question
from query import (
    WARM_UPS,
    describe_differences,
    format_ms,
    format_ratio,
    p50_p95,
    percentile,
    target_line,
)
from serving_scale_answer import Reader, ask_cold, save_summary

from tripflow.generate import split_rows
from tripflow.records import COLUMNS
from tripflow.serving.copy import Segment, ServingCopy, batch_segment_name

DEFAULT_ROWS = 100_000_000
# One file per 10M rows, as benchmarks/common.py's data sets: one batch publishes at most
# 10M trips, so one segment holds at most that many.
ROWS_PER_FILE = 10_000_000
WARM_REPEAT = 5
SCALE_HOME = BENCH_HOME / "serving-scale"
SQL_FILE = Path(__file__).resolve().parent / "sql" / "serving_scale.duckdb.sql"
# The build's own DuckDB (parsing, de-duplication, the plain table); the segment writer
# keeps its own limit (ServingCopy, 2GB), so the build may use both at once.
BUILD_MEMORY_LIMIT = "2GB"
CSV_COLUMNS = dict.fromkeys(COLUMNS, "VARCHAR")


@cache
def statements() -> dict[str, str]:
    """Return the named statements of sql/serving_scale.duckdb.sql (`-- name: x` starts x)."""
    parts = re.split(r"^-- name: (\w+)[ \t]*$", SQL_FILE.read_text(), flags=re.MULTILINE)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class DataSet:
    """Where one (rows, seed, files) data set's copy, summary and plain table live."""

    rows: int
    seed: int
    files: int
    default_files: bool

    @property
    def name(self) -> str:
        """Return the data set's directory name."""
        suffix = "" if self.default_files else f"-files{self.files}"
        return f"rows{self.rows}-seed{self.seed}{suffix}"

    @property
    def home(self) -> Path:
        """Return the directory holding the copy, the summary and the build's marker."""
        return SCALE_HOME / self.name

    @property
    def copy_dir(self) -> Path:
        """Return the serving copy's directory."""
        return self.home / "copy"

    @property
    def summary_path(self) -> Path:
        """Return the weekly summary's JSON file."""
        return self.home / "summary.json"

    @property
    def done_path(self) -> Path:
        """Return the marker of a complete build (its content: the build's report)."""
        return self.home / "_DONE"

    @property
    def work_dir(self) -> Path:
        """Return the build's scratch directory (Parquet per batch, DuckDB's spill)."""
        return self.home / "work"

    @property
    def plain_path(self) -> Path:
        """Return the plain DuckDB baseline's database file."""
        return PLAIN_DUCKDB_HOME / f"scale-{self.name}.duckdb"

    @property
    def batches(self) -> list[int]:
        """Return the batch numbers, one per file."""
        return list(range(1, self.files + 1))


@dataclass
class SegmentBuild:
    """What building one batch's segment took."""

    batch: int
    rows_read: int
    trips: int
    parse_seconds: float
    plain_seconds: float
    segment_seconds: float
    bytes: int

    @property
    def seconds(self) -> float:
        """Return the whole build of this segment, parse to commit."""
        return self.parse_seconds + self.plain_seconds + self.segment_seconds


@dataclass
class BuildReport:
    """What building the data set took; kept in its marker file."""

    rows: int
    seed: int
    files: int
    csv_seconds: float = 0.0
    csv_bytes: int = 0
    segments: list[SegmentBuild] = field(default_factory=list)
    summary_seconds: float = 0.0
    summary_groups: int = 0
    built_at: str = ""

    @property
    def trips(self) -> int:
        """Return the distinct trips the copy holds."""
        return sum(item.trips for item in self.segments)

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready values."""
        return asdict(self)

    @classmethod
    def from_json(cls, content: dict[str, Any]) -> BuildReport:
        """Return the report kept as `content`."""
        segments = [SegmentBuild(**item) for item in content.pop("segments")]
        return cls(**content, segments=segments)


# Building -------------------------------------------------------------------------------


def ready_data_set(data: DataSet, drop_csv: bool) -> BuildReport:
    """Build the data set unless complete; return the report of the build that made it."""
    if data.done_path.exists() and data.plain_path.exists():
        report = BuildReport.from_json(json.loads(data.done_path.read_text()))
        print(f"  data set {data.home}: complete, built {report.built_at}")
    else:
        report = build_data_set(data)
    if drop_csv:
        csv_home = _csv_directory(data)
        if csv_home.exists():
            shutil.rmtree(csv_home)
            print(f"  removed the CSV files ({report.csv_bytes / 1e9:,.1f} GB): {csv_home}")
    return report


def _csv_directory(data: DataSet) -> Path:
    # benchmarks/common.py's generated_csv names it so.
    return BENCH_HOME / "csv" / f"rows{data.rows}-seed{data.seed}-files{data.files}-inv0.0"


def build_data_set(data: DataSet) -> BuildReport:
    """Write the copy (one segment per file), the plain table and the summary from the
    generated CSV files; mark the data set complete last."""
    report = BuildReport(data.rows, data.seed, data.files)
    started = time.perf_counter()
    csvs = generated_csv(data.rows, data.seed, files=data.files)
    report.csv_seconds = time.perf_counter() - started
    report.csv_bytes = sum(path.stat().st_size for path in csvs)
    if len(csvs) != data.files:
        raise RuntimeError(f"expected {data.files} CSV files, found {len(csvs)}")
    print(f"  CSV ready in {report.csv_seconds:.1f} s: {report.csv_bytes / 1e9:,.2f} GB")

    # A build interrupted half-way is started again from scratch.
    shutil.rmtree(data.home, ignore_errors=True)
    data.work_dir.mkdir(parents=True)
    data.plain_path.parent.mkdir(parents=True, exist_ok=True)
    partial = data.plain_path.with_name(f".{data.plain_path.name}.partial")
    partial.unlink(missing_ok=True)
    data.plain_path.unlink(missing_ok=True)
    copy = ServingCopy(data.copy_dir)
    print(
        f"  building {data.files} segments into {data.copy_dir}\n"
        "    (parse: CSV to typed trips, each once, and the batch's Parquet; plain: appended "
        "to the plain table; segment: the copy's writer, prepare_parquet + commit)"
    )
    print(
        f"    {'batch':>5s} {'rows read':>12s} {'trips':>12s} {'parse s':>8s} "
        f"{'plain s':>8s} {'segment s':>9s} {'total s':>8s} {'MB':>9s}"
    )
    sizes = split_rows(data.rows, data.files)
    with closing(duckdb.connect(str(partial))) as duck:
        duck.execute(f"SET threads = {bench_settings().serving_threads}")
        duck.execute("SET memory_limit = ?", [BUILD_MEMORY_LIMIT])
        duck.execute("SET temp_directory = ?", [str(data.work_dir / "spill")])
        duck.execute(statements()["create_trips"])
        # The columns and types benchmarks/baselines.py's plain statement reads.
        described = duck.execute("SELECT column_name, column_type FROM (DESCRIBE trips)")
        if dict(described.fetchall()) != PLAIN_COLUMNS:
            raise RuntimeError(f"the plain table's columns differ from {PLAIN_COLUMNS}")
        for batch, (path, rows_read) in enumerate(zip(csvs, sizes, strict=True), start=1):
            built = build_segment(duck, copy, data, batch, path, rows_read)
            report.segments.append(built)
            print(
                f"    {batch:>5} {built.rows_read:>12,} {built.trips:>12,} "
                f"{built.parse_seconds:>8.1f} {built.plain_seconds:>8.1f} "
                f"{built.segment_seconds:>9.1f} {built.seconds:>8.1f} "
                f"{built.bytes / 1e6:>9,.1f}",
                flush=True,
            )
        duck.execute("CREATE TABLE source AS SELECT ? AS source", [f"serving-scale {data.name}"])
        row = duck.execute("SELECT count(*) FROM trips").fetchone()
        plain_trips = int(row[0]) if row else 0
    os.replace(partial, data.plain_path)

    started = time.perf_counter()
    segments = copy.cover(data.batches)
    if segments is None:
        raise RuntimeError(f"the copy {data.copy_dir} lacks some of batches {data.batches}")
    rows = summary_rows(segments)
    report.summary_seconds = time.perf_counter() - started
    report.summary_groups = len(rows)
    summary_trips = sum(int(row[3]) for row in rows)
    copy_trips = sum(segment.rows for segment in segments)
    if not report.trips == plain_trips == copy_trips == summary_trips:
        raise RuntimeError(
            f"trips differ: kept {report.trips}, plain table {plain_trips}, "
            f"copy {copy_trips}, summary {summary_trips}"
        )
    save_summary(data.summary_path, rows)
    print(
        f"  summary: {len(rows):,} (region, datasource, week) groups from the copy in "
        f"{report.summary_seconds:.1f} s"
    )
    shutil.rmtree(data.work_dir, ignore_errors=True)
    report.built_at = datetime.now().isoformat(timespec="seconds")
    data.done_path.write_text(json.dumps(report.to_json(), indent=1))
    return report


def build_segment(
    duck: duckdb.DuckDBPyConnection,
    copy: ServingCopy,
    data: DataSet,
    batch: int,
    path: Path,
    rows_read: int,
) -> SegmentBuild:
    """Write one CSV file's new trips as batch `batch`'s segment and into the plain table."""
    with path.open() as handle:
        header = handle.readline().strip().split(",")
    if tuple(header) != COLUMNS:
        raise RuntimeError(f"{path}: header {header}, expected {list(COLUMNS)}")
    sql = statements()
    started = time.perf_counter()
    duck.execute(sql["parse_file"], {"path": str(path), "columns": CSV_COLUMNS})
    unparsed = duck.execute(sql["unparsed_rows"]).fetchone()
    if unparsed and unparsed[0]:
        raise RuntimeError(f"{path}: {unparsed[0]} rows are not valid trips")
    duck.execute(sql["new_trips"])
    row = duck.execute("SELECT count(*) FROM fresh").fetchone()
    trips = int(row[0]) if row else 0
    parquet = data.work_dir / f"batch-{batch}.parquet"
    # The batch's trusted Parquet, in the columns the copy's writer reads.
    duck.execute(f"COPY fresh TO {_literal(str(parquet))} (FORMAT parquet)")
    parsed = time.perf_counter()
    duck.execute(sql["keep_trips"])
    duck.execute("DROP TABLE parsed")
    duck.execute("DROP TABLE fresh")
    duck.execute("CHECKPOINT")
    kept = time.perf_counter()
    segment = copy.prepare_parquet([parquet]).commit(batch_segment_name(batch), [batch])
    written = time.perf_counter()
    parquet.unlink()
    if segment.rows != trips:
        raise RuntimeError(f"batch {batch}: segment holds {segment.rows} trips, not {trips}")
    size = segment.path.stat().st_size if segment.path else 0
    return SegmentBuild(
        batch, rows_read, trips, parsed - started, kept - parsed, written - kept, size
    )


def summary_rows(segments: Sequence[Segment]) -> list[tuple[Any, ...]]:
    """Return trip_week_summary's rows, counted in the segments themselves."""
    sql = statements()
    with closing(duckdb.connect(":memory:")) as duck:
        duck.execute(f"SET threads = {bench_settings().serving_threads}")
        duck.execute("SET memory_limit = ?", [BUILD_MEMORY_LIMIT])
        duck.execute(sql["create_week_parts"])
        for number, segment in enumerate(item for item in segments if item.path):
            alias = f"segment_{number}"
            duck.execute(f"ATTACH {_literal(str(segment.path))} AS {alias} (READ_ONLY)")
            duck.execute(sql["segment_weeks"].format(segment=alias))
            duck.execute(f"DETACH {alias}")
        return duck.execute(sql["week_summary"]).fetchall()


@dataclass
class Measured:
    """One question's timings and how its answers differed."""

    question: Question
    trips: int = 0
    cold: float = math.nan
    startup: float = math.nan
    warm: float = math.nan
    plain: float = math.nan
    plain_startup: float = math.nan
    peak_rss_kb: int = 0
    imports_rss_kb: int = 0
    problems: list[str] = field(default_factory=list)


def measure_question(
    question: Question,
    reader: Reader,
    request: dict[str, Any],
    plain_path: Path,
    threads: int,
    memory: str,
) -> Measured:
    """Ask one question cold, warm and of plain DuckDB; compare the answers."""
    query = question.query
    measured = Measured(question)
    cold = ask_cold(request, query)
    measured.cold, measured.startup = cold.milliseconds, cold.startup_milliseconds
    measured.peak_rss_kb, measured.imports_rss_kb = cold.peak_rss_kb, cold.imports_rss_kb
    plain = ask_plain_duckdb(plain_path, threads, memory, query)
    measured.plain, measured.plain_startup = plain.milliseconds, plain.startup_milliseconds
    warm_answers = [reader.answer(query) for _ in range(WARM_UPS)]
    times = []
    for _ in range(WARM_REPEAT):
        started = time.perf_counter()
        warm_answers.append(reader.answer(query))
        times.append((time.perf_counter() - started) * 1000)
    measured.warm = statistics.median(times)

    ours = warm_answers[0]
    measured.trips = ours.trips
    if cold.answer != ours.to_json():
        measured.problems.append("the cold answer differs from the warm one")
    if any(answer.to_json() != ours.to_json() for answer in warm_answers[1:]):
        measured.problems.append("the warm answers differ between runs")
    assert plain.all_matching is not None
    measured.problems += describe_differences(
        ours, BaselineAnswer(plain.answer, plain.all_matching), "plain DuckDB"
    )
    return measured


# Reporting ------------------------------------------------------------------------------


def print_build(report: BuildReport, data: DataSet) -> None:
    """Print the data set's sizes on disk and what its build took."""
    copy_bytes = files_bytes(data.copy_dir)
    segments = report.segments
    print(f"\ndata set: {report.trips:,} distinct trips of {report.rows:,} rows read")
    print(
        f"  serving copy {data.copy_dir}: {copy_bytes / 1e9:,.2f} GB on disk, "
        f"{len(segments)} segments ({copy_bytes / max(report.trips, 1):,.1f} bytes per trip)"
    )
    print(f"  plain DuckDB {data.plain_path}: {data.plain_path.stat().st_size / 1e9:,.2f} GB")
    print(f"  summary {data.summary_path}: {report.summary_groups:,} groups")
    print(f"  CSV: {report.csv_bytes / 1e9:,.2f} GB (generated in {report.csv_seconds:.1f} s)")
    if segments:
        per_segment = [item.seconds for item in segments]
        print(
            f"  build per segment (parse + de-duplicate, plain table, copy's writer): "
            f"mean {statistics.mean(per_segment):.1f} s, max {max(per_segment):.1f} s "
            f"(of which the copy's writer: mean "
            f"{statistics.mean(item.segment_seconds for item in segments):.1f} s); "
            f"all segments {sum(per_segment):.1f} s; summary {report.summary_seconds:.1f} s"
        )
        print(
            "  build s per segment, batch 1 first: "
            + ", ".join(f"{seconds:.1f}" for seconds in per_segment)
        )


def print_summary(results: list[Measured], rows: int, seconds: dict[str, float]) -> None:
    """Print p50/p95 of the whole mix, the ratio to plain DuckDB and the target."""
    pooled = {
        "cold": [item.cold for item in results],
        "warm": [item.warm for item in results],
        "plain": [item.plain for item in results],
    }
    p50 = {name: percentile(values, 50) for name, values in pooled.items()}
    p95 = {name: percentile(values, 95) for name, values in pooled.items()}
    print(
        f"\nwhole mix: {len(results)} questions ({len(FIXED)} fixed, {len(RANDOM)} random "
        f"boxes), {rows:,} trips"
    )
    print(f"  {'':34s} {'p50 ms':>9s} {'p95 ms':>9s}")
    labels = {
        "cold": "tripflow cold (fresh process)",
        "warm": f"tripflow warm (median of {WARM_REPEAT})",
        "plain": "plain DuckDB cold (fresh process)",
    }
    for name, label in labels.items():
        print(f"  {label:34s} {format_ms(p50[name]):>9s} {format_ms(p95[name]):>9s}")
    print(
        f"  plain DuckDB / tripflow cold: p50 {format_ratio(p50['plain'], p50['cold'])}, "
        f"p95 {format_ratio(p95['plain'], p95['cold'])}"
    )
    for label, values in (
        ("tripflow: summary read + segments attached", [item.startup for item in results]),
        ("plain DuckDB: database opened", [item.plain_startup for item in results]),
    ):
        print(
            f"  start-up of each fresh process, not in the times above ({label}): "
            + p50_p95(values)
        )
    peak = [item.peak_rss_kb / 1024 for item in results]
    imports = [item.imports_rss_kb / 1024 for item in results]
    print(
        f"  peak RSS of a tripflow cold process: max {max(peak):,.0f} MB, "
        f"p50 {statistics.median(peak):,.0f} MB (interpreter and imports alone: "
        f"{statistics.median(imports):,.0f} MB)"
    )
    for part, questions in (("fixed", FIXED), ("random", RANDOM)):
        names = {item.name for item in questions}
        values = [item.cold for item in results if item.question.name in names]
        print(f"  tripflow cold, {len(questions)} {part} questions: {p50_p95(values)}")
    print("  time: " + ", ".join(f"{name} {value:,.1f} s" for name, value in seconds.items()))
    print(target_line(p95["cold"], rows))


def main(argv: Sequence[str] | None = None) -> int:
    """Build (or reuse) the data set, answer the mix; return 1 if any answer differs."""
    parser = argparse.ArgumentParser(
        description="The serving copy's answer times at scale, without PostgreSQL."
    )
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="generated trips")
    parser.add_argument("--seed", type=int, default=42, help="seed of the generated trips")
    parser.add_argument(
        "--rows-per-file",
        type=int,
        default=ROWS_PER_FILE,
        help="rows per CSV file, i.e. per batch and segment (default 10M)",
    )
    parser.add_argument(
        "--drop-csv",
        action="store_true",
        help="remove the generated CSV files once the copy and the plain table are built "
        "(about 110 bytes a row); by default they are kept for other benchmarks",
    )
    args = parser.parse_args(argv)
    if args.rows < 1 or args.rows_per_file < 1:
        parser.error("--rows and --rows-per-file must be at least 1")

    # As benchmarks/common.py splits its data sets, so that the CSV files are shared.
    files = max(1, args.rows // args.rows_per_file)
    default_files = files == max(1, args.rows // ROWS_PER_FILE)
    data = DataSet(args.rows, args.seed, files, default_files)
    settings = bench_settings()
    threads, memory = settings.serving_threads, settings.serving_memory_limit
    print(
        f"serving-scale benchmark: {args.rows:,} generated trips (seed {args.seed}), "
        f"{files} files, no PostgreSQL"
    )
    started = time.perf_counter()
    report = ready_data_set(data, args.drop_csv)
    seconds = {"data set ready": time.perf_counter() - started}
    print_build(report, data)

    started = time.perf_counter()
    reader = Reader.started(data.copy_dir, data.summary_path, data.batches, threads, memory)
    seconds["warm reader start-up"] = time.perf_counter() - started
    request = {
        "copy_dir": str(data.copy_dir),
        "summary": str(data.summary_path),
        "batches": data.batches,
        "threads": threads,
        "memory_limit": memory,
    }
    width = max(len(item.name) for item in MIX)
    print(
        f"\n{len(MIX)} questions; cold: one fresh process per question; warm: median of "
        f"{WARM_REPEAT} runs in this process after {WARM_UPS} warm-ups\n"
    )
    header = (
        f"{'question':{width}s} {'trips':>11s} {'cold ms':>9s} {'warm ms':>9s} "
        f"{'plain ms':>9s} {'plain/tf':>9s}"
    )
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    results: list[Measured] = []
    for question in MIX:
        measured = measure_question(question, reader, request, data.plain_path, threads, memory)
        results.append(measured)
        flag = "  MISMATCH" if measured.problems else ""
        print(
            f"{question.name:{width}s} {measured.trips:>11,} {format_ms(measured.cold):>9s} "
            f"{format_ms(measured.warm):>9s} {format_ms(measured.plain):>9s} "
            f"{format_ratio(measured.plain, measured.cold):>9s}{flag}",
            flush=True,
        )
    seconds["questions"] = time.perf_counter() - started

    print_summary(results, report.trips, seconds)
    mismatches = [item for item in results if item.problems]
    if mismatches:
        print(f"\n{len(mismatches)} questions answered differently:")
        for item in mismatches:
            print(f"  {item.question.name}: {item.question.query.to_json()}")
            for problem in item.problems:
                print(f"    {problem}")
        return 1
    print(f"\nall {len(MIX)} tripflow answers identical to plain DuckDB's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
