"""The Spark preprocess job on real (tiny) files in a temporary file:// lake."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from tests import hostile
from tripflow.pipeline import ConnectRunner, job_arguments
from tripflow.records import (
    COLUMNS,
    DEFAULT_WINDOW,
    Reason,
    Trip,
    TripWindow,
    check_header,
    check_line,
    check_row,
)
from tripflow.spark.preprocess import (
    BLOCK_SCHEMA,
    REJECTED_SCHEMA,
    TRUSTED_SCHEMA,
    FileReport,
    PreprocessJob,
    classify_rows,
    job_from_arguments,
    main,
    match_sources,
    parse_arguments,
    run,
)
from tripflow.spark.session import AnySession, connect_session, functions_for

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "trips.csv"
HEADER = ",".join(COLUMNS)
REORDERED_HEADER = "datasource,datetime,destination_coord,origin_coord,region"

# One valid row per trip the tests follow; none of them is in the sample.
V1 = "Brno,POINT (16.6 49.2),POINT (16.7 49.3),2018-05-28 09:03:40,cheap_mobile"
V2 = '"Prague, CZ",POINT (14.4 50.0),POINT (14.5 50.1),2018-05-29T10:00:00,funny_car'
V3 = "Turin,POINT (7.6 45.0),POINT (7.7 45.1),2018-05-30 11:30:00,baba_car"
# V3 again with the columns in REORDERED_HEADER's order and padded text: the same trip.
V3_REORDERED = "baba_car ,2018-05-30T11:30:00,POINT (7.7 45.1),POINT (7.6 45.0), Turin"
V4_REORDERED = "pt_search_app,2018-06-01 08:00:00,POINT (2.1 48.9),POINT (2.3 48.8),Paris"

REJECTED_ROWS = {
    4: ("Brno,POINT (16.6 49.2),POINT (16.7 49.3),2018-05-28 09:03:40", Reason.WRONG_FIELD_COUNT),
    5: ("  ,POINT (16.6 49.2),POINT (16.7 49.3),2018-05-28 09:03:40,x", Reason.EMPTY_REGION),
    6: ("Brno,POINT (16.6),POINT (16.7 49.3),2018-05-28 09:03:40,x", Reason.BAD_ORIGIN_COORD),
    7: (
        "Brno,POINT (16.6 90.5),POINT (16.7 49.3),2018-05-28 09:03:40,x",
        Reason.ORIGIN_OUT_OF_RANGE,
    ),
    8: ("Brno,POINT (16.6 49.2),POINT (a b),2018-05-28 09:03:40,x", Reason.BAD_DESTINATION_COORD),
    9: (
        "Brno,POINT (16.6 49.2),POINT (-181 0),2018-05-28 09:03:40,x",
        Reason.DESTINATION_OUT_OF_RANGE,
    ),
    10: ("Brno,POINT (16.6 49.2),POINT (16.7 49.3),2018-02-30 09:03:40,x", Reason.BAD_DATETIME),
    11: (
        "Brno,POINT (16.6 49.2),POINT (16.7 49.3),2018-05-28 09:03:40, \t",
        Reason.EMPTY_DATASOURCE,
    ),
}
# Line 1 header, 3 and 12 blank, 13 a duplicate of line 2.
REASONS_LINES = [HEADER, V1, "", *(raw for raw, _ in REJECTED_ROWS.values()), "   \t", V1, V2, V3]
REORDERED_LINES = [
    REORDERED_HEADER,
    V3_REORDERED,
    V4_REORDERED,
    V4_REORDERED,
    "pt_search_app,2018-06-31 08:00:00,POINT (2.1 48.9),POINT (2.3 48.8),Paris",
]
BAD_HEADER_LINES = ["region,origin,destination_coord,datetime,datasource", V1, "", V2]

SAMPLE_ID, REASONS_ID, REORDERED_ID, BAD_HEADER_ID = 1, 7, 12, 30


@dataclass(frozen=True)
class Batch:
    """A job that ran, with what it wrote."""

    job: PreprocessJob
    reports: list[FileReport]
    trusted: list[dict[str, object]]
    rejected: list[dict[str, object]]


def write_lines(path: Path, lines: list[str], ending: str = "\n") -> str:
    """Write a text file and return its file:// URL (spaces and all, as Lake.uri gives it)."""
    path.write_bytes("".join(line + ending for line in lines).encode())
    return f"file://{path}"


def lake_job(lake: Path, files: dict[int, str]) -> PreprocessJob:
    """Return a job of batch 1 writing into a lake directory."""
    return PreprocessJob(
        batch_id=1,
        files=files,
        trusted_url=f"file://{lake}/trusted/batch=1",
        rejected_url=f"file://{lake}/rejected/batch=1",
    )


def run_batch(spark: AnySession, lake: Path, files: dict[int, str]) -> Batch:
    """Run the job into a lake directory and read back what it wrote."""
    job = lake_job(lake, files)
    reports = run(spark, job)
    trusted = [row.asDict() for row in spark.read.parquet(job.trusted_url).collect()]
    rejected = [row.asDict() for row in spark.read.parquet(job.rejected_url).collect()]
    return Batch(job, reports, trusted, rejected)


def report_of(batch: Batch, file_id: int) -> FileReport:
    """Return the report of one file of a batch."""
    return next(report for report in batch.reports if report.file_id == file_id)


@pytest.fixture(scope="module")
def mixed(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Batch:
    """One batch of four files: the sample, one row per reason, reordered columns, bad header."""
    home = tmp_path_factory.mktemp("mixed")
    files = {
        SAMPLE_ID: SAMPLE.as_uri(),
        REASONS_ID: write_lines(home / "reasons.csv", REASONS_LINES),
        # A name Spark would otherwise URL-encode and read as a glob pattern.
        REORDERED_ID: write_lines(home / "reordered [2].csv", REORDERED_LINES, ending="\r\n"),
        BAD_HEADER_ID: write_lines(home / "bad_header.csv", BAD_HEADER_LINES),
    }
    return run_batch(spark, home / "lake", files)


def sample_trips() -> list[Trip]:
    """Return the sample file's trips as the plain-Python contract reads them."""
    with SAMPLE.open(newline="") as handle:
        rows = list(csv.reader(handle))
    positions = check_header(rows[0])
    trips = [check_row(fields, positions) for fields in rows[1:]]
    assert all(isinstance(trip, Trip) for trip in trips)
    return [trip for trip in trips if isinstance(trip, Trip)]


def as_trip(row: dict[str, object]) -> Trip:
    """Return a trusted row as a Trip."""
    return Trip(*(row[name] for name in list(Trip.__dataclass_fields__)))


def test_loads_the_sample_file_into_typed_trusted_rows(mixed: Batch, spark: SparkSession) -> None:
    loaded = [as_trip(row) for row in mixed.trusted if row["file_id"] == SAMPLE_ID]
    assert sorted(loaded, key=repr) == sorted(sample_trips(), key=repr)
    assert report_of(mixed, SAMPLE_ID) == FileReport(SAMPLE_ID, 100, 100, 0, 0, None)
    schema = spark.read.parquet(mixed.job.trusted_url).schema
    assert [(item.name, item.dataType) for item in schema.fields] == [
        (item.name, item.dataType) for item in TRUSTED_SCHEMA.fields
    ]


def test_keys_each_trip_with_the_md5_of_its_natural_key(mixed: Batch) -> None:
    row = next(row for row in mixed.trusted if row["region"] == "Brno")
    natural = "\u001f".join(
        ["Brno", "16.6", "49.2", "16.7", "49.3", "2018-05-28 09:03:40", "cheap_mobile"]
    )
    assert row["trip_key"] == hashlib.md5(natural.encode()).hexdigest()
    assert row["datetime"] == datetime(2018, 5, 28, 9, 3, 40)


def test_rejects_each_broken_rule_with_its_reason_line_and_raw_text(mixed: Batch) -> None:
    rejected = {
        row["line"]: (row["raw"], row["reason"], row["file"])
        for row in mixed.rejected
        if row["file_id"] == REASONS_ID
    }
    expected_file = mixed.job.files[REASONS_ID]
    assert rejected == {
        line: (raw, reason.value, expected_file) for line, (raw, reason) in REJECTED_ROWS.items()
    }
    # The reasons of broken bytes, quoting and names are the hostile-lines test's, the
    # window's the tricky rows', a wrong header's the bad-header file's.
    assert {reason for _, reason in REJECTED_ROWS.values()} == set(Reason) - {
        Reason.WRONG_HEADER,
        Reason.DATETIME_OUT_OF_WINDOW,
        Reason.INVALID_UTF8,
        Reason.UNBALANCED_QUOTES,
        Reason.CONTROL_CHARACTER,
        Reason.TEXT_TOO_LONG,
    }


def test_reads_columns_in_the_order_of_each_files_header(mixed: Batch) -> None:
    paris = [row for row in mixed.trusted if row["region"] == "Paris"]
    assert len(paris) == 1
    assert as_trip(paris[0]) == Trip(
        "Paris", 2.3, 48.8, 2.1, 48.9, datetime(2018, 6, 1, 8, 0), "pt_search_app"
    )
    assert paris[0]["file_id"] == REORDERED_ID
    [bad_date] = [row for row in mixed.rejected if row["file_id"] == REORDERED_ID]
    assert (bad_date["line"], bad_date["reason"]) == (5, Reason.BAD_DATETIME.value)
    assert bad_date["raw"] == REORDERED_LINES[4]


def test_keeps_duplicates_once_and_counts_them_on_their_file(mixed: Batch) -> None:
    trips = [as_trip(row) for row in mixed.trusted if row["file_id"] != SAMPLE_ID]
    assert sorted(trip.region for trip in trips) == ["Brno", "Paris", "Prague, CZ", "Turin"]
    # Turin came first in file 7, so its copy in file 12 is the duplicate.
    [turin] = [row for row in mixed.trusted if (row["region"], row["origin_lon"]) == ("Turin", 7.6)]
    assert turin["file_id"] == REASONS_ID
    assert len({row["trip_key"] for row in mixed.trusted}) == len(mixed.trusted)
    assert report_of(mixed, REASONS_ID) == FileReport(REASONS_ID, 12, 3, 8, 1, None)
    assert report_of(mixed, REORDERED_ID) == FileReport(REORDERED_ID, 4, 1, 1, 2, None)


def test_rejects_a_file_with_a_wrong_header_whole_while_the_others_load(mixed: Batch) -> None:
    report = report_of(mixed, BAD_HEADER_ID)
    assert (report.rows_read, report.rows_valid, report.rows_rejected) == (2, 0, 2)
    assert report.rows_duplicate == 0
    assert report.header_error is not None
    assert "missing origin_coord" in report.header_error
    assert "unexpected 'origin'" in report.header_error
    assert all(row["file_id"] != BAD_HEADER_ID for row in mixed.trusted)
    # Its data lines are rejected rows, as many as its report counts.
    assert sorted(
        (row["line"], row["raw"], row["reason"])
        for row in mixed.rejected
        if row["file_id"] == BAD_HEADER_ID
    ) == [(2, V1, Reason.WRONG_HEADER.value), (4, V2, Reason.WRONG_HEADER.value)]
    assert sum(row["file_id"] == SAMPLE_ID for row in mixed.trusted) == 100


def test_ignores_blank_lines(mixed: Batch) -> None:
    lines = {row["line"] for row in mixed.rejected if row["file_id"] == REASONS_ID}
    assert not lines & {3, 12}
    report = report_of(mixed, REASONS_ID)
    blank = sum(not line.strip() for line in REASONS_LINES)
    assert report.rows_read == len(REASONS_LINES) - 1 - blank


def test_reads_a_quoted_field_containing_a_comma(mixed: Batch) -> None:
    [prague] = [row for row in mixed.trusted if row["region"] == "Prague, CZ"]
    assert (prague["origin_lon"], prague["destination_lat"]) == (14.4, 50.1)
    assert prague["datetime"] == datetime(2018, 5, 29, 10, 0)


def test_writes_the_report_as_json_lines_beside_the_trusted_rows(mixed: Batch) -> None:
    directory = Path(mixed.job.report_url.removeprefix("file://"))
    [part] = directory.glob("part-*.json")
    lines = [json.loads(line) for line in part.read_text().splitlines()]
    assert lines == [
        {
            "file_id": report.file_id,
            "rows_read": report.rows_read,
            "rows_valid": report.rows_valid,
            "rows_rejected": report.rows_rejected,
            "rows_duplicate": report.rows_duplicate,
            "header_error": report.header_error,
        }
        for report in mixed.reports
    ]
    assert [report.file_id for report in mixed.reports] == sorted(mixed.job.files)


def test_keeps_nothing_cached_after_the_job(mixed: Batch, spark: SparkSession) -> None:
    # A Spark Connect server runs job after job: a batch's kept rows must not stay behind.
    assert mixed.reports
    assert spark._jsparkSession.sharedState().cacheManager().isEmpty()


def test_running_twice_gives_the_same_output(mixed: Batch, spark: SparkSession) -> None:
    lake = Path(mixed.job.trusted_url.removeprefix("file://")).parents[1]
    again = run_batch(spark, lake, mixed.job.files)
    assert again.reports == mixed.reports
    assert sorted(again.trusted, key=repr) == sorted(mixed.trusted, key=repr)
    assert sorted(again.rejected, key=repr) == sorted(mixed.rejected, key=repr)


@pytest.fixture(params=["classic", "connect"])
def small_blocks(request: pytest.FixtureRequest, spark: SparkSession) -> Iterator[AnySession]:
    """A session (in this process, or on the Spark Connect server) reading 300-byte blocks."""
    if request.param == "classic":
        session: AnySession = spark.newSession()
    else:
        session = connect_session(request.getfixturevalue("spark_connect_url"))
    session.conf.set("spark.sql.files.maxPartitionBytes", "300")
    yield session
    if request.param == "connect":
        session.stop()


def test_numbers_lines_exactly_across_many_blocks(small_blocks: AnySession, tmp_path: Path) -> None:
    # Every 5th line is rejected and names its own line number; blank lines fall across
    # block boundaries too.
    lines = [HEADER]
    expected: dict[int, str] = {}
    for number in range(2, 121):
        if number % 11 == 0:
            lines.append("")
        elif number % 5 == 0:
            lines.append(
                f"Brno,POINT (16.6 49.2),POINT (16.7 49.3),2018-05-28 09:03:40,line{number},"
            )
            expected[number] = lines[-1]
        else:
            lines.append(
                f"Brno,POINT (16.6 49.2),POINT (16.7 49.3),2018-05-28 09:03:40,src{number}"
            )
    url = write_lines(tmp_path / "long.csv", lines)
    with functions_for(small_blocks):
        blocks = small_blocks.read.text(url).select(F.input_file_block_start()).distinct()
    assert blocks.count() >= 10

    batch = run_batch(small_blocks, tmp_path / "lake", {3: url})

    assert {row["line"]: row["raw"] for row in batch.rejected} == expected
    assert {row["reason"] for row in batch.rejected} == {Reason.WRONG_FIELD_COUNT.value}
    valid = len(lines) - 1 - lines.count("") - len(expected)
    assert batch.reports == [FileReport(3, valid + len(expected), valid, len(expected), 0)]


def test_writes_the_same_output_through_a_spark_connect_server(
    mixed: Batch, spark: SparkSession, spark_connect_url: str, tmp_path: Path
) -> None:
    job = lake_job(tmp_path / "lake", mixed.job.files)

    ConnectRunner(spark_connect_url).run(job)

    trusted = [row.asDict() for row in spark.read.parquet(job.trusted_url).collect()]
    rejected = [row.asDict() for row in spark.read.parquet(job.rejected_url).collect()]
    assert sorted(trusted, key=repr) == sorted(mixed.trusted, key=repr)
    assert sorted(rejected, key=repr) == sorted(mixed.rejected, key=repr)
    [written] = Path(job.report_url.removeprefix("file://")).glob("part-*.json")
    [expected] = Path(mixed.job.report_url.removeprefix("file://")).glob("part-*.json")
    assert written.read_text() == expected.read_text()


def test_writes_readable_empty_datasets_when_no_file_loads(
    spark: SparkSession, tmp_path: Path
) -> None:
    files = {
        1: write_lines(tmp_path / "bad.csv", BAD_HEADER_LINES),
        2: write_lines(tmp_path / "empty.csv", []),
    }
    batch = run_batch(spark, tmp_path / "lake", files)
    assert batch.trusted == []
    assert sorted((row["line"], row["reason"]) for row in batch.rejected) == [
        (2, Reason.WRONG_HEADER.value),
        (4, Reason.WRONG_HEADER.value),
    ]
    assert spark.read.parquet(batch.job.trusted_url).schema == TRUSTED_SCHEMA
    assert spark.read.parquet(batch.job.rejected_url).schema == REJECTED_SCHEMA
    assert batch.reports[1] == FileReport(2, 0, 0, 0, 0, "empty file: no header line")


def test_refuses_a_file_spark_would_skip(spark: SparkSession, tmp_path: Path) -> None:
    url = write_lines(tmp_path / "_hidden.csv", [HEADER, V1])
    with pytest.raises(ValueError, match="did not read"):
        run_batch(spark, tmp_path / "lake", {1: url})


# Rows where a Spark expression and Python could disagree; the plain-Python contract decides.
TRICKY_ROWS = [
    V1,
    V2,
    '"Pra""gue",POINT (1 2),POINT (3 4),2018-05-28 09:03:40,x',
    '"",POINT (1 2),POINT (3 4),2018-05-28 09:03:40,x',
    "\tPrague\u00a0,POINT (1 2),POINT (3 4),2018-05-28 09:03:40,\u3000car\u2003",
    "\u3000,POINT (1 2),POINT (3 4),2018-05-28 09:03:40,x",
    "\x1fa\x1f,POINT (1 2),POINT (3 4),2018-05-28 09:03:40,x",
    "Brno,POINT (1 2),POINT (3 4),2018-05-28 09:03:40,x,",
    "Brno,POINT (1 2),POINT (3 4),2018-05-28 09:03:40",
    '"Brno,POINT (1 2),POINT (3 4),2018-05-28 09:03:40,x',
    "Brno,point(1e1 -2E-1),Point (1. .5),2018-05-28 09:03:40,x",
    "Brno,POINT (+1 -0),POINT ( 1  2 ),2018-05-28 09:03:40,x",
    "Brno,POINT\t(1\t2) ,POINT (3 4),2018-05-28 09:03:40,x",
    "Brno,POINT (1 2) x,POINT (3 4),2018-05-28 09:03:40,x",
    "Brno,POINT (1 2 3),POINT (3 4),2018-05-28 09:03:40,x",
    "Brno,POINT (nan 1),POINT (3 4),2018-05-28 09:03:40,x",
    "Brno,POINT (Infinity 1),POINT (3 4),2018-05-28 09:03:40,x",
    "Brno,POINT (1d 2),POINT (3 4),2018-05-28 09:03:40,x",
    "Brno,POINT (0x10 2),POINT (3 4),2018-05-28 09:03:40,x",
    "Brno,POINT (1e999 2),POINT (3 4),2018-05-28 09:03:40,x",
    "Brno,POINT (180 90),POINT (-180 -90),2018-05-28 09:03:40,x",
    "Brno,POINT (180.0000001 0),POINT (3 4),2018-05-28 09:03:40,x",
    "Brno,POINT (1 2),POINT (3 -90.0000001),2018-05-28 09:03:40,x",
    "Brno,POINT (1 2),POINT 3 4,2018-05-28 09:03:40,x",
    "Brno,POINT (1 2),POINT (3 4), 2018-05-28T09:03:40\u00a0,x",
    "Brno,POINT (1 2),POINT (3 4),2018-05-28t09:03:40,x",
    "Brno,POINT (1 2),POINT (3 4),2018-05-28  09:03:40,x",
    "Brno,POINT (1 2),POINT (3 4),2016-02-29 23:59:59,x",
    "Brno,POINT (1 2),POINT (3 4),2018-02-29 00:00:00,x",
    "Brno,POINT (1 2),POINT (3 4),0000-01-01 00:00:00,x",
    "Brno,POINT (1 2),POINT (3 4),0001-01-01 00:00:00,x",
    "Brno,POINT (1 2),POINT (3 4),9999-12-31 23:59:59,x",
    "Brno,POINT (1 2),POINT (3 4),2018-05-28 23:59:60,x",
    "Brno,POINT (1 2),POINT (3 4),2018-05-28 24:00:00,x",
    "Brno,POINT (1 2),POINT (3 4),2018-05-28 09:03,x",
    "Brno,POINT (1 2),POINT (3 4),2018-05-28 09:03:40.5,x",
    "Brno,POINT (1 2),POINT (3 4),2018-05-28 09:03:40,",
    ",nowhere,nowhere,never,",
    "a\\,POINT (1 2),POINT (3 4),2018-05-28 09:03:40,x",
    " x ,POINT (1 2),POINT (3 4),2018-05-28 09:03:40, y ",
    "Old\x00Town,POINT (1 2),POINT (3 4),2018-05-28 09:03:40,x",
    "\x00,POINT (1 2),POINT (3 4),2018-05-28 09:03:40,x",
    "Old\u0085Town,POINT (1 2),POINT (3 4),2018-05-28 09:03:40,x",
    "\u0085Town\u0085,POINT (1 2),POINT (3 4),2018-05-28 09:03:40,x",
    "Town,POINT (1 2),POINT (3 4),2018-05-28 09:03:40,x\u009f",
    'Old Town",POINT (1 2),POINT (3 4),2018-05-28 09:03:40,x',
    '"Old"" Town",POINT (1 2),POINT (3 4),2018-05-28 09:03:40,x',
    '"Old Town,POINT (1 2),POINT (3 4),2018-05-28 09:03:40,"x"',
    "R" * 256 + ",POINT (1 2),POINT (3 4),2018-05-28 09:03:40," + "\U0001f68b" * 256,
    "R" * 257 + ",POINT (1 2),POINT (3 4),2018-05-28 09:03:40,x",
    "R" * 257 + ",POINT (1 2),POINT (3 4),2018-05-28 09:03:40,\x01",
    "Brno,POINT (1 2),POINT (3 4),2018-05-28 09:03:40," + "\U0001f68b" * 257,
]


@pytest.mark.parametrize(
    "window",
    [
        DEFAULT_WINDOW,
        # Bounds on rows' own times: the earliest is accepted, the latest is not.
        TripWindow(datetime(2016, 2, 29, 23, 59, 59), datetime(2018, 5, 28, 9, 3, 40)),
    ],
    ids=["default-window", "narrow-window"],
)
def test_matches_the_plain_python_contract_on_tricky_rows(
    spark: SparkSession, window: TripWindow
) -> None:
    positions = {column: index for index, column in enumerate(COLUMNS)}
    numbered = spark.createDataFrame(
        [
            (1, "file:///tricky.csv", line, raw, True, *(positions[column] for column in COLUMNS))
            for line, raw in enumerate(TRICKY_ROWS, start=2)
        ],
        "file_id long, file string, line long, raw string, header_ok boolean, "
        + ", ".join(f"{column}_at int" for column in COLUMNS),
    )
    outcomes = {row["line"]: row.asDict() for row in classify_rows(numbered, window).collect()}

    for line, raw in enumerate(TRICKY_ROWS, start=2):
        expected = check_line(raw, positions, window)
        got = outcomes[line]
        if isinstance(expected, Reason):
            assert got["reason"] == expected.value, raw
        else:
            assert got["reason"] is None, raw
            assert as_trip(got) == expected, raw


def test_block_schema_names_a_position_for_each_contract_column() -> None:
    assert [name for name in BLOCK_SCHEMA.fieldNames() if name.endswith("_at")] == [
        f"{column}_at" for column in COLUMNS
    ]


def test_matches_spark_file_names_back_to_file_ids() -> None:
    files = {1: "file:///lake/a b.csv", 2: "file:/lake/50%.csv", 3: "/lake/plain.csv"}
    sources = ["file:///lake/a%20b.csv", "file:/lake/50%25.csv", "file:///lake/plain.csv"]
    assert match_sources(files, sources) == dict(zip(sources, [1, 2, 3], strict=True))


def test_refuses_a_spark_file_name_that_is_none_of_the_jobs() -> None:
    with pytest.raises(ValueError, match="none of the job's files"):
        match_sources({1: "file:///lake/a.csv"}, ["file:///lake/a.csv", "file:///lake/b.csv"])


def test_main_reports_a_bad_job_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["--batch-id", "1", "--trusted", "file:///t", "--rejected", "file:///r"]
    status = main([*arguments, "--file", "1=file:///x.csv", "--file", "2=file:/x.csv"])
    assert status == 1
    error = capsys.readouterr().err
    assert error == "preprocess failed: ValueError: a preprocess job lists the same file twice\n"


def test_runs_under_spark_submit(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "src" / "tripflow" / "spark" / "preprocess.py"
    spark_submit = Path(sys.executable).parent / "spark-submit"
    environment = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    trusted = f"file://{tmp_path}/trusted"
    command = [
        str(spark_submit),
        str(script),
        "--batch-id",
        "5",
        "--trusted",
        trusted,
        "--rejected",
        f"file://{tmp_path}/rejected",
        "--file",
        f"1={SAMPLE.as_uri()}",
        "--master",
        "local[1]",
    ]
    done = subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "batch 5: 1 files, 100 valid, 0 rejected, 0 duplicate, 0 header errors" in done.stdout
    [part] = (tmp_path / "trusted" / "_report").glob("part-*.json")
    assert json.loads(part.read_text()) == {
        "file_id": 1,
        "rows_read": 100,
        "rows_valid": 100,
        "rows_rejected": 0,
        "rows_duplicate": 0,
        "header_error": None,
    }


def test_rejects_hostile_lines_with_reasons_and_keeps_the_good_ones(
    spark: SparkSession, tmp_path: Path
) -> None:
    # Good and hostile lines alternate, so each bad line sits between good ones.
    lines = []
    for good, bad in zip(hostile.GOOD * 3, hostile.HOSTILE.values(), strict=False):
        lines += [good, bad]
    lines += hostile.GOOD
    path = tmp_path / "hostile.csv"
    path.write_bytes(hostile.file_bytes(lines))

    batch = run_batch(spark, tmp_path / "lake", {1: f"file://{path}"})

    expected = {
        number: check_line(item, hostile.POSITIONS) for number, item in enumerate(lines, start=2)
    }
    rejected = {number: why.value for number, why in expected.items() if isinstance(why, Reason)}
    assert {row["line"]: row["reason"] for row in batch.rejected} == rejected
    assert set(rejected.values()) == {
        Reason.INVALID_UTF8.value,
        Reason.UNBALANCED_QUOTES.value,
        Reason.CONTROL_CHARACTER.value,
        Reason.TEXT_TOO_LONG.value,
    }
    trips = {trip for trip in expected.values() if isinstance(trip, Trip)}
    assert len(trips) == len(hostile.GOOD)
    assert {as_trip(row) for row in batch.trusted} == trips
    report = report_of(batch, 1)
    assert (report.rows_read, report.rows_valid, report.rows_rejected) == (
        len(lines),
        len(trips),
        len(hostile.HOSTILE),
    )
    # Rejected lines are kept as text a reader can open: bad bytes replaced, the rest as is.
    raws = {row["line"]: row["raw"] for row in batch.rejected}
    for number, item in enumerate(lines, start=2):
        if number in raws:
            assert raws[number] == item.decode("utf-8", "replace") or (
                rejected[number] == Reason.INVALID_UTF8.value and "\ufffd" in raws[number]
            )


def test_passes_the_trip_window_on_the_command_line() -> None:
    window = TripWindow(datetime(2010, 1, 1), datetime(2030, 6, 1, 12, 0))
    job = PreprocessJob(1, {1: "file:///a.csv"}, "file:///t", "file:///r", window)
    assert job_from_arguments(parse_arguments(job_arguments(job))) == job
    default = PreprocessJob(1, {1: "file:///a.csv"}, "file:///t", "file:///r")
    assert job_from_arguments(parse_arguments(job_arguments(default))).window == DEFAULT_WINDOW
