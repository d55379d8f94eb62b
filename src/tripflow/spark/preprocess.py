"""The Spark job: validate a batch of trip CSV files into typed, de-duplicated Parquet.

Run it with `spark-submit src/tripflow/spark/preprocess.py --batch-id 1 --trusted URL
--rejected URL --file 1=URL ...`, or import it and call `run(spark, job)`.

The job reads its input twice, each time in parallel and never on the driver:
  1. an aggregation per (file, block) gives each block's first row id and line count (hence
     exact line numbers), each file's header, its blank lines and rows_read;
  2. every data line is numbered and validated once; the result is kept (memory, spilling to
     disk) while the trusted rows (de-duplicated) and the rejected rows are written from it.
Valid and rejected counts come from the file_id column of the Parquet just written, not from
another pass over the CSV; duplicates are the rest of rows_read.

Why not one read: the first pass only counts lines and keeps one line per block, ~1 s per
million rows on a file in the page cache. Keeping the scanned lines for the second pass
instead (so the CSV is read once) made the job slower on a 1M-row file (22.7-38.3 s against
14.4-33.5 s, warm Spark Connect, 2 busy cores): building the copy costs more than reading the
text again, and at ten million rows the copy no longer fits a 2 GB driver.
"""

from __future__ import annotations

import argparse
import csv
import posixpath
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
)
from pyspark.storagelevel import StorageLevel

from tripflow import records
from tripflow.records import COLUMNS, DEFAULT_WINDOW, HeaderError, Reason, TripWindow
from tripflow.spark.session import build_session, functions_for

if TYPE_CHECKING:
    from tripflow.spark.session import AnySession

TRUSTED_SCHEMA = StructType(
    [
        StructField("trip_key", StringType()),
        StructField("region", StringType()),
        StructField("origin_lon", DoubleType()),
        StructField("origin_lat", DoubleType()),
        StructField("destination_lon", DoubleType()),
        StructField("destination_lat", DoubleType()),
        StructField("datetime", TimestampNTZType()),
        StructField("datasource", StringType()),
        StructField("file_id", LongType()),
    ]
)
REJECTED_SCHEMA = StructType(
    [
        StructField("file_id", LongType()),
        StructField("file", StringType()),
        StructField("line", LongType()),
        StructField("raw", StringType()),
        StructField("reason", StringType()),
    ]
)
REPORT_SCHEMA = StructType(
    [
        StructField("file_id", LongType()),
        StructField("rows_read", LongType()),
        StructField("rows_valid", LongType()),
        StructField("rows_rejected", LongType()),
        StructField("rows_duplicate", LongType()),
        StructField("header_error", StringType()),
    ]
)
# Per (file, block) facts the driver sends back to every task: line offsets, the file's id
# and URL, and where each contract column sits in that file's header.
BLOCK_SCHEMA = StructType(
    [
        StructField("source", StringType()),
        StructField("block", LongType()),
        StructField("file_id", LongType()),
        StructField("url", StringType()),
        StructField("first_row_id", LongType()),
        StructField("lines_before", LongType()),
        # False for a file whose header is wrong: its data lines are rejected rows
        # (wrong_header), and its column positions are null.
        StructField("header_ok", BooleanType()),
        *(StructField(f"{column}_at", IntegerType()) for column in COLUMNS),
    ]
)

# Joins the natural key's parts before hashing: a control character no trip text contains.
KEY_SEPARATOR = "\u001f"
EMPTY_FILE_ERROR = "empty file: no header line"
# The Monday a trip's week starts on (Spark's date_trunc('week') is ISO, as PostgreSQL's).
_WEEK = "_week"

# Every character Python's str.strip() removes (records.py trims with str.strip(); Spark's
# trim() only removes spaces). All of them lie in the BMP. Trimmed as a set with btrim, which
# is much cheaper per row than a regex.
_WHITESPACE = "".join(char for char in map(chr, range(0x10000)) if char.isspace())
# The same characters one by one: a set lookup of a text's first or last character tells
# most texts (which neither start nor end with whitespace) apart without trimming them.
_WHITESPACE_CHARS = tuple(_WHITESPACE)
_MALFORMED = "_malformed"
# RFC 4180 quoting as Python's csv module reads it: "" inside quotes is one quote (Spark's
# default escape is a backslash), and spaces around fields are kept for the rules to judge.
_CSV_OPTIONS = {
    "sep": ",",
    "quote": '"',
    "escape": '"',
    "ignoreLeadingWhiteSpace": "false",
    "ignoreTrailingWhiteSpace": "false",
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": _MALFORMED,
}
# One field per contract column plus the corrupt-record column: the CSV parser fills it with
# the raw line whenever the line has more or fewer fields than the schema, so a wrong field
# count is never padded or cut silently.
_CSV_SCHEMA = ", ".join(
    [*(f"f{index} STRING" for index in range(len(COLUMNS))), f"{_MALFORMED} STRING"]
)
# The CSV parser (univocity) aborts the whole task on a line with more fields than this, its
# default limit; lines with that many commas are rejected before they reach it.
_MAX_PARSED_FIELDS = 20480
# Characters that make Hadoop treat a path as a glob pattern (Spark's isGlobPath).
_GLOB_CHARACTERS = "\\{}[]*?"


@dataclass(frozen=True)
class PreprocessJob:
    """One batch to preprocess: its files (file_id -> full URL) and where the output goes."""

    batch_id: int
    files: dict[int, str]
    trusted_url: str
    rejected_url: str
    # The trip times the contract accepts (TRIPFLOW_TRIP_EARLIEST / TRIPFLOW_TRIP_LATEST).
    window: TripWindow = DEFAULT_WINDOW
    # Hadoop settings of the lake the job reads and writes (S3A's endpoint and keys for an
    # s3:// lake), set on the session before it reads; the S3A jars must be on its classpath.
    hadoop_conf: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.files:
            raise ValueError("a preprocess job needs at least one file")
        locations = [_hadoop_location(url) for url in self.files.values()]
        if len(set(locations)) != len(locations):
            raise ValueError("a preprocess job lists the same file twice")

    @property
    def report_url(self) -> str:
        """Return where the per-file report (JSON lines) is written."""
        return self.trusted_url.rstrip("/") + "/_report"


@dataclass(frozen=True)
class FileReport:
    """What happened to one file: rows_read = rows_valid + rows_rejected + rows_duplicate."""

    file_id: int
    rows_read: int
    rows_valid: int
    rows_rejected: int
    rows_duplicate: int
    header_error: str | None = None


@dataclass(frozen=True)
class BlockSummary:
    """The lines Spark read from one block (input split) of one file."""

    source: str
    block: int
    first_row_id: int
    lines: int
    blank_lines: int
    first_line: str


@dataclass(frozen=True)
class FilePlan:
    """One file of the job after its header was read: columns, line offsets, counts."""

    file_id: int
    url: str
    rows_read: int
    positions: dict[str, int] | None
    header_error: str | None
    # (source, block, first_row_id, lines_before) of each block, in file order.
    blocks: list[tuple[str, int, int, int]] = field(default_factory=list)


# --- pure DataFrame transforms -------------------------------------------------------------


def tag_lines(text: DataFrame) -> DataFrame:
    """Tag each line of a text scan with its source file, block and a row id growing along it."""
    # These must be computed straight over the scan: the file and block come from the task's
    # current input split, and the row ids are consecutive within a split only there.
    return text.select(
        F.input_file_name().alias("source"),
        F.input_file_block_start().alias("block"),
        F.monotonically_increasing_id().alias("row_id"),
        F.col("value").alias("raw"),
    )


def is_blank(text: Column) -> Column:
    """Tell whether a text is empty or whitespace only (as Python's str.strip() sees it)."""
    # Trimmed only when it starts with whitespace: every line goes through this twice, and a
    # trim costs a copy and a scan of the character set (0.90 s against 0.58 s per 2M lines).
    return (F.length(text) == 0) | (
        _starts_with_whitespace(text) & (F.btrim(text, F.lit(_WHITESPACE)) == "")
    )


def strip(text: Column) -> Column:
    """Remove leading and trailing whitespace exactly as Python's str.strip() does."""
    # Trimmed only when an end is whitespace; the text as it is otherwise (three fields of
    # 2M rows: 1.34 s against 0.93 s).
    ends_with_whitespace = F.substring(text, -1, 1).isin(*_WHITESPACE_CHARS)
    return F.when(
        _starts_with_whitespace(text) | ends_with_whitespace, F.btrim(text, F.lit(_WHITESPACE))
    ).otherwise(text)


def _starts_with_whitespace(text: Column) -> Column:
    return F.substring(text, 1, 1).isin(*_WHITESPACE_CHARS)


def summarise_blocks(lines: DataFrame) -> DataFrame:
    """Count the lines of each (file, block) and give its first row id, first line and blanks."""
    return lines.groupBy("source", "block").agg(
        F.min("row_id").alias("first_row_id"),
        F.count(F.lit(1)).alias("lines"),
        F.sum(F.when(is_blank(F.col("raw")), 1).otherwise(0)).alias("blank_lines"),
        F.min_by("raw", "row_id").alias("first_line"),
    )


def number_lines(lines: DataFrame, blocks: DataFrame) -> DataFrame:
    """Give each data line of the files in `blocks` its file_id, URL and 1-based line number.

    Headers and blank lines are left out."""
    # Row ids grow by one per line within a block, so a line's number is the lines of the
    # file's earlier blocks plus its distance from the block's first row id.
    numbered = lines.join(F.broadcast(blocks), on=["source", "block"], how="inner").select(
        F.col("file_id"),
        F.col("url").alias("file"),
        (F.col("lines_before") + F.col("row_id") - F.col("first_row_id") + 1).alias("line"),
        F.col("raw"),
        F.col("header_ok"),
        *(F.col(f"{column}_at") for column in COLUMNS),
    )
    return numbered.where((F.col("line") > 1) & ~is_blank(F.col("raw")))


def parse_point(text: Column, group: int) -> Column:
    """Return one number (1: longitude, 2: latitude) of a WKT point field, or null."""
    # No match extracts "", which try_cast turns into null: no separate match test needed.
    number = F.regexp_extract(text, records.POINT_PATTERN, group).try_cast(DoubleType())
    # -0.0 and 0.0 are the same place but print differently in the trip key; adding +0.0
    # turns -0.0 into 0.0 and leaves every other double as it is. (A when(number == 0.0)
    # would name the number twice, and Spark then ran the pattern twice: 9.1 s against
    # 4.6 s for the four numbers of 2M rows.)
    return number + F.lit(0.0)


def in_range(lon: Column, lat: Column) -> Column:
    """Tell whether a longitude/latitude pair lies on the globe (false for null)."""
    inside = lon.between(records.MIN_LON, records.MAX_LON) & lat.between(
        records.MIN_LAT, records.MAX_LAT
    )
    return F.coalesce(inside, F.lit(False))


def parse_datetime(text: Column) -> Column:
    """Return the TIMESTAMP_NTZ of a stripped datetime field, or null if it is not valid."""

    def part(start: int, length: int) -> Column:
        return F.substring(text, start, length).try_cast(IntegerType())

    year, month, day = part(1, 4), part(6, 2), part(9, 2)
    hour, minute, second = part(12, 2), part(15, 2), part(18, 2)
    # make_timestamp accepts year 0 and rolls second 60 over to the next minute; Python's
    # datetime (the contract's reference) refuses both.
    plausible = text.rlike(records.DATETIME_PATTERN) & (year >= 1) & (second <= 59)
    return F.when(
        plausible,
        F.try_make_timestamp_ntz(
            years=year, months=month, days=day, hours=hour, mins=minute, secs=second
        ),
    )


def trip_key(
    region: Column,
    origin_lon: Column,
    origin_lat: Column,
    destination_lon: Column,
    destination_lat: Column,
    moment: Column,
    datasource: Column,
) -> Column:
    """Return the lowercase hex md5 of a trip's natural key."""
    parts = [
        region,
        origin_lon.cast(StringType()),
        origin_lat.cast(StringType()),
        destination_lon.cast(StringType()),
        destination_lat.cast(StringType()),
        F.date_format(moment, "yyyy-MM-dd HH:mm:ss"),
        datasource,
    ]
    return F.md5(F.concat_ws(KEY_SEPARATOR, *parts))


def classify_rows(numbered: DataFrame, window: TripWindow = DEFAULT_WINDOW) -> DataFrame:
    """Apply the contract to each numbered line: typed values, or the reason it is rejected."""
    raw = F.col("raw")
    # Or short-circuits: only lines long enough to hold that many commas are counted.
    parsable = (F.length(raw) < _MAX_PARSED_FIELDS) | (
        F.length(F.regexp_replace(raw, "[^,]", "")) < _MAX_PARSED_FIELDS
    )
    parsed = numbered.withColumn(
        "parsed", F.when(parsable, F.from_csv(raw, _CSV_SCHEMA, _CSV_OPTIONS))
    )
    wrong_field_count = F.col("parsed").isNull() | F.col(f"parsed.{_MALFORMED}").isNotNull()
    # The parser reads an empty field as null; the contract sees an empty string.
    fields = F.array(
        *(F.coalesce(F.col(f"parsed.f{index}"), F.lit("")) for index in range(len(COLUMNS)))
    )

    def field_of(column: str) -> Column:
        return F.get(F.col("fields"), F.col(f"{column}_at"))

    # The text source hands each line's bytes over as they are; anything read from a line
    # that is not UTF-8 would hold replacement characters the file never said.
    invalid_utf8 = ~F.is_valid_utf8(raw)
    # Quotes are counted only on lines that have one (most have none).
    quotes = F.length(raw) - F.length(F.replace(raw, F.lit(records.QUOTE), F.lit("")))
    unbalanced_quotes = F.when(F.instr(raw, records.QUOTE) > 0, quotes % 2 == 1).otherwise(
        F.lit(False)
    )
    line_rules = ["header_ok", "invalid_utf8", "unbalanced_quotes", "wrong_field_count"]
    typed = parsed.select(
        "file_id",
        "file",
        "line",
        "raw",
        "header_ok",
        invalid_utf8.alias("invalid_utf8"),
        unbalanced_quotes.alias("unbalanced_quotes"),
        wrong_field_count.alias("wrong_field_count"),
        fields.alias("fields"),
        *(F.col(f"{column}_at") for column in COLUMNS),
    ).select(
        "file_id",
        "file",
        "line",
        "raw",
        *line_rules,
        strip(field_of("region")).alias("region"),
        parse_point(field_of("origin_coord"), 1).alias("origin_lon"),
        parse_point(field_of("origin_coord"), 2).alias("origin_lat"),
        parse_point(field_of("destination_coord"), 1).alias("destination_lon"),
        parse_point(field_of("destination_coord"), 2).alias("destination_lat"),
        # Stripped once into a column of its own: parse_datetime names its text nine times,
        # and Spark repeats an expression under a condition rather than sharing it (1.82 s
        # against 1.52 s for 2M rows' datetimes).
        strip(field_of("datetime")).alias("datetime_text"),
        strip(field_of("datasource")).alias("datasource"),
    )
    typed = typed.withColumn("datetime", parse_datetime(F.col("datetime_text"))).select(
        *(name for name in typed.columns if name != "datetime_text"), "datetime"
    )

    origin_lon, origin_lat = F.col("origin_lon"), F.col("origin_lat")
    destination_lon, destination_lat = F.col("destination_lon"), F.col("destination_lat")
    # The first rule broken, in the order of the Reason enum, as records.check_row does.
    region, datasource = F.col("region"), F.col("datasource")
    rules: list[tuple[Column, Reason]] = [
        (~F.col("header_ok"), Reason.WRONG_HEADER),
        (F.col("invalid_utf8"), Reason.INVALID_UTF8),
        (F.col("unbalanced_quotes"), Reason.UNBALANCED_QUOTES),
        (F.col("wrong_field_count"), Reason.WRONG_FIELD_COUNT),
        (F.col("region") == "", Reason.EMPTY_REGION),
        (origin_lon.isNull() | origin_lat.isNull(), Reason.BAD_ORIGIN_COORD),
        (~in_range(origin_lon, origin_lat), Reason.ORIGIN_OUT_OF_RANGE),
        (destination_lon.isNull() | destination_lat.isNull(), Reason.BAD_DESTINATION_COORD),
        (~in_range(destination_lon, destination_lat), Reason.DESTINATION_OUT_OF_RANGE),
        (F.col("datetime").isNull(), Reason.BAD_DATETIME),
        (
            (F.col("datetime") < _timestamp(window.earliest))
            | (F.col("datetime") >= _timestamp(window.latest)),
            Reason.DATETIME_OUT_OF_WINDOW,
        ),
        (F.col("datasource") == "", Reason.EMPTY_DATASOURCE),
        (
            region.rlike(records.CONTROL_PATTERN) | datasource.rlike(records.CONTROL_PATTERN),
            Reason.CONTROL_CHARACTER,
        ),
        (
            F.greatest(F.length(region), F.length(datasource)) > records.MAX_TEXT_LENGTH,
            Reason.TEXT_TOO_LONG,
        ),
    ]
    reason = F.when(rules[0][0], F.lit(rules[0][1].value))
    for broken, why in rules[1:]:
        reason = reason.when(broken, F.lit(why.value))
    # A line that is not UTF-8 is kept with its bad bytes replaced (U+FFFD): the rejected
    # rows stay readable text, and the reason says the file's bytes were not that.
    return typed.withColumns(
        {
            "reason": reason,
            "raw": F.when(F.col("invalid_utf8"), F.make_valid_utf8(F.col("raw"))).otherwise(
                F.col("raw")
            ),
        }
    ).drop(*line_rules)


def _timestamp(moment: datetime) -> Column:
    """A TIMESTAMP_NTZ literal (a Python datetime would become a zoned TIMESTAMP)."""
    return F.lit(moment.isoformat(sep=" ")).cast(TimestampNTZType())


def slim_valid_rows(classified: DataFrame) -> DataFrame:
    """Drop the raw text and file URL of valid rows: only rejected rows are written with them."""
    rejected = F.col("reason").isNotNull()
    return classified.withColumns(
        {"raw": F.when(rejected, F.col("raw")), "file": F.when(rejected, F.col("file"))}
    )


def select_trusted(classified: DataFrame) -> DataFrame:
    """Keep the valid rows once per trip_key (the copy of the lowest file_id), trusted schema."""
    keyed = classified.where(F.col("reason").isNull()).withColumn(
        "trip_key",
        trip_key(
            F.col("region"),
            F.col("origin_lon"),
            F.col("origin_lat"),
            F.col("destination_lon"),
            F.col("destination_lat"),
            F.col("datetime"),
            F.col("datasource"),
        ),
    )
    # Rows with the same key hold the same values (the key is their hash), so the copy kept
    # is told by its file alone, and the lowest file_id is the first copy. A hash
    # aggregation on the values finds it without sorting the batch (10% faster than a
    # row_number window over the key, same rows: measured on 2M rows).
    #
    # The rows are shuffled by trip week for it (the week depends on the values only, so
    # the aggregation needs no second shuffle), and each task then sorts its weeks into
    # PLACE_ORDER: every week of the batch lies in one output file, in the order publish
    # stores it. PostgreSQL then takes the staged rows as they come instead of sorting the
    # batch itself (its sort was 6 s of an 11.6 s INSERT of 2M trips).
    values = [item.name for item in TRUSTED_SCHEMA.fields if item.name != "file_id"]
    kept = (
        keyed.withColumn(_WEEK, F.date_trunc("week", F.col("datetime")))
        .repartition(_WEEK)
        .groupBy(_WEEK, *values)
        .agg(F.min("file_id").alias("file_id"))
        .sortWithinPartitions(*place_order())
    )
    return kept.select(*(F.col(item.name).cast(item.dataType) for item in TRUSTED_SCHEMA.fields))


def place_order() -> list[Column]:
    """The order publish stores a batch's trips in: week by week (one partition after the
    other), then by place: west-to-east runs along bands of 0.005 degrees of origin latitude
    (about 550 m), by region first. A box then reads a few runs of neighbouring pages per
    batch instead of one page per trip."""
    return [
        F.col(_WEEK),
        F.col("region"),
        F.floor(F.col("origin_lat") * 200),
        F.col("origin_lon"),
    ]


def select_rejected(classified: DataFrame) -> DataFrame:
    """Keep the rejected rows with their file, line, raw text and reason."""
    rejected = classified.where(F.col("reason").isNotNull())
    return rejected.select(
        *(F.col(item.name).cast(item.dataType) for item in REJECTED_SCHEMA.fields)
    )


# --- driver-side planning (plain Python) -----------------------------------------------------


def _hadoop_location(url: str) -> tuple[str, str, str]:
    """Split a path as Hadoop reads it (no %-decoding, no query) into scheme, authority, path."""
    scheme, rest = "", url
    colon, slash = url.find(":"), url.find("/")
    if colon > 0 and (slash == -1 or colon < slash):
        scheme, rest = url[:colon].lower(), url[colon + 1 :]
    authority = ""
    if rest.startswith("//"):
        end = rest.find("/", 2)
        authority, rest = (rest[2:], "") if end == -1 else (rest[2:end], rest[end:])
    return scheme, authority.lower(), posixpath.normpath(rest or "/")


def _spark_location(name: str) -> tuple[str, str, str]:
    """Split a file name as Spark reports it (a %-encoded URI) into scheme, authority, path."""
    parts = urlsplit(name)
    return (
        parts.scheme.lower(),
        parts.netloc.lower(),
        posixpath.normpath(unquote(parts.path) or "/"),
    )


def match_sources(files: Mapping[int, str], sources: Iterable[str]) -> dict[str, int]:
    """Map the file names Spark reports back to the job's file ids, or raise ValueError.

    Spark reports `file:///x%20y` for `file:/x y`, and a fully qualified URL for a path
    given without scheme or authority; a path alone matches when only one file has it."""
    exact = {_hadoop_location(url): file_id for file_id, url in files.items()}
    by_path: dict[str, list[int]] = {}
    for (_, _, path), file_id in exact.items():
        by_path.setdefault(path, []).append(file_id)
    matched: dict[str, int] = {}
    for source in sources:
        location = _spark_location(source)
        if location in exact:
            matched[source] = exact[location]
        elif len(by_path.get(location[2], [])) == 1:
            matched[source] = by_path[location[2]][0]
        else:
            raise ValueError(f"Spark read {source}, which is none of the job's files")
    missing = sorted(set(files) - set(matched.values()))
    if missing:
        # Spark skips names starting with '_' or '.' even when they are given explicitly.
        raise ValueError(
            "Spark did not read "
            + ", ".join(files[file_id] for file_id in missing)
            + " (hidden names starting with '_' or '.' are skipped)"
        )
    return matched


def read_header(line: str | None) -> tuple[dict[str, int] | None, str | None]:
    """Parse a file's first line as CSV: the column positions, or the header error."""
    if line is None:
        return None, EMPTY_FILE_ERROR
    names = next(csv.reader([line]), [])
    try:
        return records.check_header(names), None
    except HeaderError as error:
        return None, str(error)


def plan_files(
    files: Mapping[int, str], sources: Mapping[str, int], summaries: Iterable[BlockSummary]
) -> list[FilePlan]:
    """Work out each file's header, rows_read and block line offsets from the block summaries."""
    blocks_of: dict[int, list[BlockSummary]] = {file_id: [] for file_id in files}
    for summary in summaries:
        blocks_of[sources[summary.source]].append(summary)
    plans = []
    for file_id, url in sorted(files.items()):
        blocks = sorted(blocks_of[file_id], key=lambda summary: summary.block)
        header = blocks[0].first_line if blocks else None
        positions, error = read_header(header)
        lines = sum(block.lines for block in blocks)
        blanks = sum(block.blank_lines for block in blocks)
        # The header is line 1 even when it is blank; it is no data line either way.
        data_lines = max(lines - 1, 0) - (
            blanks - (1 if header is not None and not header.strip() else 0)
        )
        offsets, before = [], 0
        for block in blocks:
            offsets.append((block.source, block.block, block.first_row_id, before))
            before += block.lines
        plans.append(FilePlan(file_id, url, data_lines, positions, error, offsets))
    return plans


def block_rows(plans: Iterable[FilePlan]) -> list[tuple[object, ...]]:
    """Return the rows of the block table (BLOCK_SCHEMA): every block of every file, those of
    a file with a wrong header without column positions."""
    rows: list[tuple[object, ...]] = []
    for plan in plans:
        positions = plan.positions
        at = tuple(positions[column] if positions else None for column in COLUMNS)
        for source, block, first_row_id, lines_before in plan.blocks:
            rows.append(
                (
                    source,
                    block,
                    plan.file_id,
                    plan.url,
                    first_row_id,
                    lines_before,
                    positions is not None,
                    *at,
                )
            )
    return rows


def build_reports(
    plans: Iterable[FilePlan], valid: Mapping[int, int], rejected: Mapping[int, int]
) -> list[FileReport]:
    """Combine rows_read with the written valid/rejected counts into one report per file."""
    reports = []
    for plan in plans:
        if plan.header_error is not None:
            reports.append(
                FileReport(plan.file_id, plan.rows_read, 0, plan.rows_read, 0, plan.header_error)
            )
            continue
        rows_valid, rows_rejected = valid.get(plan.file_id, 0), rejected.get(plan.file_id, 0)
        duplicates = plan.rows_read - rows_valid - rows_rejected
        if duplicates < 0:
            raise RuntimeError(
                f"file {plan.file_id}: {rows_valid} valid + {rows_rejected} rejected rows "
                f"exceed the {plan.rows_read} rows read"
            )
        reports.append(
            FileReport(plan.file_id, plan.rows_read, rows_valid, rows_rejected, duplicates)
        )
    return reports


def _readable_path(url: str) -> str:
    """Escape glob characters: Spark would otherwise read `a[1].csv` as a pattern (`a1.csv`)."""
    if not any(char in url for char in _GLOB_CHARACTERS):
        return url
    return "".join("\\" + char if char in _GLOB_CHARACTERS else char for char in url)


def _count_by_file(frame: DataFrame) -> dict[int, int]:
    return {
        int(row["file_id"]): int(row["count"]) for row in frame.groupBy("file_id").count().collect()
    }


# --- the job ---------------------------------------------------------------------------------


def run(spark: AnySession, job: PreprocessJob) -> list[FileReport]:
    """Preprocess one batch: write trusted and rejected Parquet and the report, return it.

    `spark` is a session in this process or on a Spark Connect server."""
    with functions_for(spark):
        return _run(spark, job)


def _run(spark: AnySession, job: PreprocessJob) -> list[FileReport]:
    # Session settings reach the Hadoop configuration of every read and write the session
    # plans: a session started without them (a shared one, a Connect server's) still reaches
    # the lake, in this process or on the server.
    for key, value in job.hadoop_conf.items():
        spark.conf.set(key, value)
    text = spark.read.text([_readable_path(url) for url in job.files.values()])
    listed = text.inputFiles()
    # Fail fast, before any pass, if Spark would skip or swap one of the files.
    match_sources(job.files, listed)
    lines = tag_lines(text)

    # Pass 1: few rows (one per block), so they are collected to the driver.
    summaries = [
        BlockSummary(
            source=row["source"],
            block=int(row["block"]),
            first_row_id=int(row["first_row_id"]),
            lines=int(row["lines"]),
            blank_lines=int(row["blank_lines"]),
            first_line=row["first_line"],
        )
        for row in summarise_blocks(lines).collect()
    ]
    sources = match_sources(job.files, [*listed, *(summary.source for summary in summaries)])
    plans = plan_files(job.files, sources, summaries)
    blocks = spark.createDataFrame(block_rows(plans), BLOCK_SCHEMA)
    # Pass 2: classified once, kept while both outputs are written from it (the rejected
    # write then costs a filter of the kept rows, not another read and validation). Slim:
    # most rows are valid and need neither their raw text nor their file's URL again.
    classified = slim_valid_rows(classify_rows(number_lines(lines, blocks), job.window)).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    try:
        # Overwrite: a rerun replaces whatever a crashed run left behind.
        select_trusted(classified).write.mode("overwrite").parquet(job.trusted_url)
        select_rejected(classified).write.mode("overwrite").parquet(job.rejected_url)
    finally:
        # A Spark Connect server outlives the job: its memory must not keep the batch.
        classified.unpersist()

    valid = _count_by_file(spark.read.parquet(job.trusted_url))
    rejected = _count_by_file(spark.read.parquet(job.rejected_url))
    reports = build_reports(plans, valid, rejected)
    report_rows = [
        (r.file_id, r.rows_read, r.rows_valid, r.rows_rejected, r.rows_duplicate, r.header_error)
        for r in reports
    ]
    # Written after the trusted Parquet: it lives inside that directory, which overwrite clears.
    (
        spark.createDataFrame(report_rows, REPORT_SCHEMA)
        .coalesce(1)
        .write.mode("overwrite")
        .option("ignoreNullFields", "false")
        .json(job.report_url)
    )
    return reports


def _moment_argument(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected an ISO date or datetime, got {text!r}"
        ) from error


def _file_argument(text: str) -> tuple[int, str]:
    file_id, separator, url = text.partition("=")
    if not separator or not url or not file_id.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected FILE_ID=URL, got {text!r}")
    return int(file_id), url


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the job's command line."""
    parser = argparse.ArgumentParser(
        prog="preprocess", description="Validate a batch of trip CSV files into Parquet."
    )
    parser.add_argument("--batch-id", type=int, required=True)
    parser.add_argument("--trusted", required=True, help="URL of the trusted Parquet output")
    parser.add_argument("--rejected", required=True, help="URL of the rejected rows output")
    parser.add_argument(
        "--file",
        dest="files",
        type=_file_argument,
        action="append",
        required=True,
        metavar="FILE_ID=URL",
        help="a file of the batch (repeat for each file)",
    )
    parser.add_argument(
        "--earliest",
        type=_moment_argument,
        default=DEFAULT_WINDOW.earliest,
        help="earliest trip time accepted (default %(default)s)",
    )
    parser.add_argument(
        "--latest",
        type=_moment_argument,
        default=DEFAULT_WINDOW.latest,
        help="trip times from this one on are rejected (default %(default)s)",
    )
    parser.add_argument(
        "--master",
        default=None,
        # No default of its own: under spark-submit its --master (the Airflow connection's)
        # rules; a plain `python preprocess.py` gets PySpark's local[*].
        help="Spark master (default: spark-submit's --master, else local[*])",
    )
    arguments = parser.parse_args(argv)
    file_ids = [file_id for file_id, _ in arguments.files]
    if len(set(file_ids)) != len(file_ids):
        parser.error("each FILE_ID may appear only once")
    if arguments.earliest >= arguments.latest:
        parser.error("--latest must be later than --earliest")
    return arguments


def job_from_arguments(arguments: argparse.Namespace) -> PreprocessJob:
    """Return the job a parsed command line describes."""
    return PreprocessJob(
        batch_id=arguments.batch_id,
        files=dict(arguments.files),
        trusted_url=arguments.trusted,
        rejected_url=arguments.rejected,
        window=TripWindow(arguments.earliest, arguments.latest),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job from the command line; return 0, or 1 after a one-line error."""
    arguments = parse_arguments(argv)
    spark: SparkSession | None = None
    try:
        job = job_from_arguments(arguments)
        spark = build_session(arguments.master, app_name=f"tripflow-preprocess-{job.batch_id}")
        reports = run(spark, job)
    except Exception as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"preprocess failed: {type(error).__name__}: {message}", file=sys.stderr)
        return 1
    finally:
        if spark is not None:
            spark.stop()
    print(
        f"batch {job.batch_id}: {len(reports)} files, "
        f"{sum(r.rows_valid for r in reports)} valid, "
        f"{sum(r.rows_rejected for r in reports)} rejected, "
        f"{sum(r.rows_duplicate for r in reports)} duplicate, "
        f"{sum(r.header_error is not None for r in reports)} header errors"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
