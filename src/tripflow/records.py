"""The data contract of trip files: columns, validation rules and reject reasons.

The Spark job applies the same rules with Spark expressions built from the constants here;
`check_row` is the plain-Python statement of the contract, used by tests as the reference.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

COLUMNS: tuple[str, ...] = ("region", "origin_coord", "destination_coord", "datetime", "datasource")

# One number as the contract accepts it: decimal, optional sign and exponent, no NaN/inf.
NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
# WKT point, longitude first. Written to mean the same to Python's re and Java's regex.
POINT_PATTERN = rf"^(?i)\s*POINT\s*\(\s*({NUMBER})\s+({NUMBER})\s*\)\s*$"
DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}$"
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"

MIN_LON, MAX_LON = -180.0, 180.0
MIN_LAT, MAX_LAT = -90.0, 90.0

# The most characters a region or datasource may have (after trimming). Both are indexed by
# PostgreSQL's btree, whose entries must fit a third of a page (2,704 bytes): 256 characters
# of up to 4 bytes each leave room for the other key columns.
MAX_TEXT_LENGTH = 256
# Control characters (C0, DEL, C1) inside a region or datasource: PostgreSQL's text cannot
# hold NUL, and none of them belongs in a name (trip keys join their parts with U+001F).
# Written to mean the same to Python's re and Java's regex.
CONTROL_PATTERN = r"[\x00-\x1f\x7f-\x9f]"
QUOTE = '"'


@dataclass(frozen=True)
class TripWindow:
    """The trip times the contract accepts: `[earliest, latest)`, wall-clock.

    A trip dated year 1 or 9999 is legal text but no real trip: one of them stretches every
    question without a range over thousands of years of empty weeks. The default window is
    a hundred years, which MAX_SPAN_WEEKS of the API covers whole."""

    earliest: datetime = datetime(1970, 1, 1)
    latest: datetime = datetime(2070, 1, 1)

    def __post_init__(self) -> None:
        if self.earliest >= self.latest:
            raise ValueError(
                f"the trip window must end after it starts: {self.earliest} to {self.latest}"
            )

    def __contains__(self, moment: object) -> bool:
        return isinstance(moment, datetime) and self.earliest <= moment < self.latest


DEFAULT_WINDOW = TripWindow()

# ASCII: Java regex classes (\s, \d) match ASCII only; Python must agree with Spark.
_POINT = re.compile(POINT_PATTERN.replace("^(?i)", "^"), re.IGNORECASE | re.ASCII)
_DATETIME = re.compile(DATETIME_PATTERN, re.ASCII)
_CONTROL = re.compile(CONTROL_PATTERN)


class Reason(StrEnum):
    """Why a row was rejected; the first rule a row breaks, in this order, is its reason."""

    # The line's file has a wrong header (the file's error says how): every data line of it
    # is rejected, since its columns cannot be told apart.
    WRONG_HEADER = "wrong_header"
    # The line's bytes are not UTF-8: whatever it says cannot be read for sure.
    INVALID_UTF8 = "invalid_utf8"
    # An odd number of double quotes: a quoted field is left open, as when a field holding a
    # line break was split into two lines (a field cannot span lines in a trip file).
    UNBALANCED_QUOTES = "unbalanced_quotes"
    WRONG_FIELD_COUNT = "wrong_field_count"
    EMPTY_REGION = "empty_region"
    BAD_ORIGIN_COORD = "bad_origin_coord"
    ORIGIN_OUT_OF_RANGE = "origin_out_of_range"
    BAD_DESTINATION_COORD = "bad_destination_coord"
    DESTINATION_OUT_OF_RANGE = "destination_out_of_range"
    BAD_DATETIME = "bad_datetime"
    # A datetime outside the trip window (TripWindow; TRIPFLOW_TRIP_EARLIEST / _LATEST).
    DATETIME_OUT_OF_WINDOW = "datetime_out_of_window"
    EMPTY_DATASOURCE = "empty_datasource"
    # A region or datasource holding a control character (CONTROL_PATTERN).
    CONTROL_CHARACTER = "control_character"
    # A region or datasource longer than MAX_TEXT_LENGTH characters.
    TEXT_TOO_LONG = "text_too_long"


class HeaderError(ValueError):
    """A file's header does not name exactly the contract's columns."""


@dataclass(frozen=True)
class Trip:
    """One valid trip, typed."""

    region: str
    origin_lon: float
    origin_lat: float
    destination_lon: float
    destination_lat: float
    datetime: datetime
    datasource: str


def check_header(names: Sequence[str]) -> dict[str, int]:
    """Map each contract column to its position in a header, or raise HeaderError."""
    cleaned = [name.strip().lstrip("\ufeff").strip() for name in names]
    missing = [column for column in COLUMNS if column not in cleaned]
    unexpected = [name for name in cleaned if name not in COLUMNS]
    repeated = sorted({name for name in cleaned if cleaned.count(name) > 1})
    if missing or unexpected or repeated:
        problems = []
        if missing:
            problems.append("missing " + ", ".join(missing))
        if unexpected:
            problems.append("unexpected " + ", ".join(repr(name) for name in unexpected))
        if repeated:
            problems.append("repeated " + ", ".join(repeated))
        raise HeaderError(
            f"wrong header ({'; '.join(problems)}): expected the columns {','.join(COLUMNS)} "
            f"in any order, got {','.join(cleaned)!r}"
        )
    return {column: cleaned.index(column) for column in COLUMNS}


def parse_point(text: str) -> tuple[float, float] | None:
    """Return (lon, lat) of a WKT point, or None if it does not parse."""
    found = _POINT.match(text)
    if not found:
        return None
    return float(found.group(1)), float(found.group(2))


def in_range(lon: float, lat: float) -> bool:
    """Tell whether a longitude/latitude pair lies on the globe."""
    return MIN_LON <= lon <= MAX_LON and MIN_LAT <= lat <= MAX_LAT


def parse_datetime(text: str) -> datetime | None:
    """Return the wall-clock datetime of a field, or None if it is not valid."""
    text = text.strip()
    if not _DATETIME.match(text):
        return None
    try:
        return datetime.strptime(text.replace("T", " "), DATETIME_FORMAT)
    except ValueError:
        return None


def check_line(
    line: bytes | str, positions: dict[str, int], window: TripWindow = DEFAULT_WINDOW
) -> Trip | Reason:
    """Apply the contract to one data line of a file (without its line break), as the Spark
    job reads it: UTF-8, balanced quotes, then the CSV fields (check_row)."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            return Reason.INVALID_UTF8
    if line.count(QUOTE) % 2:
        return Reason.UNBALANCED_QUOTES
    # A field as long as the whole line must parse (csv caps fields at 128 KiB by default).
    limit = csv.field_size_limit(max(csv.field_size_limit(), len(line) + 1))
    try:
        fields = next(csv.reader([line]), [])
    finally:
        csv.field_size_limit(limit)
    return check_row(fields, positions, window)


def check_row(
    fields: Sequence[str], positions: dict[str, int], window: TripWindow = DEFAULT_WINDOW
) -> Trip | Reason:
    """Apply the contract to one row's fields: the typed trip, or the reason it is rejected."""
    if len(fields) != len(COLUMNS):
        return Reason.WRONG_FIELD_COUNT
    region = fields[positions["region"]].strip()
    if not region:
        return Reason.EMPTY_REGION
    origin = parse_point(fields[positions["origin_coord"]])
    if origin is None:
        return Reason.BAD_ORIGIN_COORD
    if not in_range(*origin):
        return Reason.ORIGIN_OUT_OF_RANGE
    destination = parse_point(fields[positions["destination_coord"]])
    if destination is None:
        return Reason.BAD_DESTINATION_COORD
    if not in_range(*destination):
        return Reason.DESTINATION_OUT_OF_RANGE
    moment = parse_datetime(fields[positions["datetime"]])
    if moment is None:
        return Reason.BAD_DATETIME
    if moment not in window:
        return Reason.DATETIME_OUT_OF_WINDOW
    datasource = fields[positions["datasource"]].strip()
    if not datasource:
        return Reason.EMPTY_DATASOURCE
    if _CONTROL.search(region) or _CONTROL.search(datasource):
        return Reason.CONTROL_CHARACTER
    if max(len(region), len(datasource)) > MAX_TEXT_LENGTH:
        return Reason.TEXT_TOO_LONG
    return Trip(region, *origin, *destination, moment, datasource)
