"""Strict parsing of query strings: every mistake is named, none reaches the database."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypeVar

from tripflow.config import MAX_RESOLUTION, MINUTES_PER_DAY
from tripflow.records import CONTROL_PATTERN, MAX_LAT, MAX_LON, MIN_LAT, MIN_LON
from tripflow.serving.groups import GroupGrid, GroupQuery, valid_bucket_widths
from tripflow.weeks import AreaQuery, BBox, Match, SpanTooLongError, range_span

AREA_PARAMETERS = ("bbox", "region", "datasource", "from", "to", "match")
INGESTION_PARAMETERS = ("limit",)
DEFAULT_INGESTION_LIMIT = 50
MAX_INGESTION_LIMIT = 1000

# ASCII digits only (re.ASCII): Python's \d also takes other scripts' digits, which int()
# and float() read ("limit=%D9%A5" was 5), and a date of them got a misleading reason. \Z,
# not $: $ also matches before a final newline.
# A plain decimal number: float() alone would also take "nan", "inf" and "1_0".
_NUMBER = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\Z", re.ASCII)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z", re.ASCII)
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}\Z", re.ASCII)
_INTEGER = re.compile(r"^\d{1,9}\Z", re.ASCII)

# What `from` and `to` accept, as one regular expression for the OpenAPI document: a
# calendar date of years 0001-9999 (February 29 in leap years only), optionally a time of
# day. parse_moment accepts exactly these; only ASCII and explicit classes, so that Python,
# ECMA-262 and Rust engines read it alike.
_YEAR = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_MONTH_DAY = (
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_TIME = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
MOMENT_PATTERN = f"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)(?:[T ]{_TIME})?$"

# Characters no region or datasource holds (records.CONTROL_PATTERN), and the whitespace
# str.strip() trims besides them. A name is the text between its trimmed ends: at least one
# character that is neither, and no control character anywhere.
_CONTROL = re.compile(CONTROL_PATTERN)
_SPACES = r"\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_CONTROLS = CONTROL_PATTERN[1:-1]
NAME_PATTERN = f"^[^{_CONTROLS}]*[^{_CONTROLS}{_SPACES}][^{_CONTROLS}]*$"

QueryArgs = Mapping[str, Sequence[str]]
_T = TypeVar("_T")


@dataclass(frozen=True)
class InvalidParam:
    """One rejected query parameter and the reason."""

    name: str
    reason: str


class ParamError(ValueError):
    """A request's query string breaks the rules; carries every broken rule."""

    def __init__(self, invalid: Sequence[InvalidParam]) -> None:
        super().__init__("; ".join(f"{item.name}: {item.reason}" for item in invalid))
        self.invalid = list(invalid)


def check_names(args: QueryArgs, allowed: Collection[str]) -> list[InvalidParam]:
    """Return a problem for every unknown or repeated parameter name."""
    problems = []
    expected = ", ".join(allowed) if allowed else "none"
    for name, values in args.items():
        if name not in allowed:
            problems.append(
                InvalidParam(name, f"unknown parameter; this endpoint takes: {expected}")
            )
        elif len(values) > 1:
            problems.append(InvalidParam(name, f"given {len(values)} times; give it at most once"))
    return problems


def reject_any(args: QueryArgs, allowed: Collection[str] = ()) -> None:
    """Raise ParamError if the query string has unknown or repeated parameters."""
    problems = check_names(args, allowed)
    if problems:
        raise ParamError(problems)


def _single(args: QueryArgs, name: str) -> str | None:
    values = args.get(name)
    return values[0] if values and len(values) == 1 else None


def parse_bbox(text: str) -> BBox:
    """Parse `min_lon,min_lat,max_lon,max_lat` into a BBox, or raise ValueError saying why."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 4:
        raise ValueError(
            f"must be 4 comma-separated numbers min_lon,min_lat,max_lon,max_lat; got {len(parts)}"
        )
    names = ("min_lon", "min_lat", "max_lon", "max_lat")
    numbers = []
    for name, part in zip(names, parts, strict=True):
        if not _NUMBER.match(part):
            raise ValueError(f"{name} {part!r} is not a decimal number")
        number = float(part)
        if not math.isfinite(number):
            raise ValueError(f"{name} {part!r} is not a finite number")
        numbers.append(number)
    min_lon, min_lat, max_lon, max_lat = numbers
    for name, value in (("min_lon", min_lon), ("max_lon", max_lon)):
        if not MIN_LON <= value <= MAX_LON:
            raise ValueError(f"{name} {value:g} is outside [-180, 180]")
    for name, value in (("min_lat", min_lat), ("max_lat", max_lat)):
        if not MIN_LAT <= value <= MAX_LAT:
            raise ValueError(f"{name} {value:g} is outside [-90, 90]")
    if min_lon > max_lon:
        raise ValueError(f"min_lon {min_lon:g} is greater than max_lon {max_lon:g}")
    if min_lat > max_lat:
        raise ValueError(f"min_lat {min_lat:g} is greater than max_lat {max_lat:g}")
    return BBox(min_lon, min_lat, max_lon, max_lat)


def parse_moment(text: str) -> datetime:
    """Parse `YYYY-MM-DD` or `YYYY-MM-DD[T ]HH:MM:SS` into a naive datetime."""
    if _DATE.match(text):
        try:
            return datetime.combine(date.fromisoformat(text), datetime.min.time())
        except ValueError:
            raise ValueError(f"{text!r} is not a calendar date") from None
    if _DATETIME.match(text):
        try:
            return datetime.strptime(text.replace("T", " "), "%Y-%m-%d %H:%M:%S")
        except ValueError:
            raise ValueError(f"{text!r} is not a valid date and time") from None
    raise ValueError(f"{text!r} is not YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS or YYYY-MM-DD HH:MM:SS")


def parse_name(value: str) -> str:
    """Trim a region or datasource name, or raise ValueError if no stored name can match it."""
    control = _CONTROL.search(value)
    if control:
        raise ValueError(f"holds the control character {control.group()!r}, which no name holds")
    cleaned = value.strip()
    if not cleaned:
        raise ValueError("must not be empty")
    return cleaned


class _Reader:
    """Reads a query string's parameters one by one, collecting every problem."""

    def __init__(self, args: QueryArgs, allowed: Collection[str]) -> None:
        self.args = args
        self.problems = check_names(args, allowed)
        self._failed = {problem.name for problem in self.problems}

    def read(self, name: str, parse: Callable[[str], _T]) -> _T | None:
        """Parse one parameter; None when absent, repeated, unknown or refused."""
        text = _single(self.args, name)
        if text is None or name in self._failed:
            return None
        try:
            return parse(text)
        except ValueError as error:
            self.problems.append(InvalidParam(name, str(error)))
            self._failed.add(name)
            return None


def whole_number(low: int, high: int, allowed: Collection[int] = ()) -> Callable[[str], int]:
    """Return a parser of ASCII whole numbers from low to high (and among `allowed`)."""

    def parse(text: str) -> int:
        if not _INTEGER.match(text) or not low <= int(text) <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        if allowed and int(text) not in allowed:
            listed = ", ".join(str(item) for item in sorted(allowed))
            raise ValueError(f"{int(text)} is not one of those kept: {listed}")
        return int(text)

    return parse


def parse_area_query(args: QueryArgs) -> AreaQuery:
    """Parse a weekly-average query string into an AreaQuery, or raise ParamError."""
    reader = _Reader(args, AREA_PARAMETERS)
    read, problems = reader.read, reader.problems
    bbox = read("bbox", parse_bbox)
    region = read("region", parse_name)
    datasource = read("datasource", parse_name)
    start = read("from", parse_moment)
    end = read("to", parse_moment)
    match = read("match", _parse_match)
    if start is not None and end is not None:
        if start >= end:
            problems.append(InvalidParam("to", f"must be later than from ({start.isoformat()})"))
        else:
            try:
                range_span(start, end)
            except SpanTooLongError as error:
                problems.append(InvalidParam("to", str(error)))
    if problems:
        raise ParamError(problems)
    return AreaQuery(
        bbox=bbox,
        region=region,
        datasource=datasource,
        start=start,
        end=end,
        match=match if match is not None else Match.BOTH,
    )


def _parse_match(text: str) -> Match:
    try:
        return Match(text)
    except ValueError:
        allowed = ", ".join(str(mode) for mode in Match)
        raise ValueError(f"{text!r} is not one of {allowed}") from None


def parse_ingestion_limit(args: QueryArgs) -> int:
    """Parse the ingestion listing's query string into its `limit`, or raise ParamError."""
    reader = _Reader(args, INGESTION_PARAMETERS)
    limit = reader.read("limit", whole_number(1, MAX_INGESTION_LIMIT))
    if reader.problems:
        raise ParamError(reader.problems)
    return DEFAULT_INGESTION_LIMIT if limit is None else limit


GROUP_PARAMETERS = ("region", "datasource", "resolution", "bucket", "min_trips", "limit", "offset")
DEFAULT_GROUP_BUCKET = 60
DEFAULT_GROUP_LIMIT = 20
MAX_GROUP_LIMIT = 1000
MAX_GROUP_OFFSET = 100_000_000


def default_bucket(grid: GroupGrid) -> int:
    """Return the bucket width /trip-groups uses when none is asked: an hour if it can."""
    return DEFAULT_GROUP_BUCKET if DEFAULT_GROUP_BUCKET % grid.minutes == 0 else grid.minutes


def parse_group_query(args: QueryArgs, grid: GroupGrid, default_resolution: int) -> GroupQuery:
    """Parse a /trip-groups query string into a GroupQuery for the kept grid, or raise
    ParamError."""
    reader = _Reader(args, GROUP_PARAMETERS)
    read = reader.read
    widths = valid_bucket_widths(grid.minutes)
    region = read("region", parse_name)
    datasource = read("datasource", parse_name)
    resolution = read("resolution", whole_number(0, MAX_RESOLUTION, grid.resolutions))
    bucket = read("bucket", whole_number(1, MINUTES_PER_DAY, widths))
    min_trips = read("min_trips", whole_number(1, 999_999_999))
    limit = read("limit", whole_number(1, MAX_GROUP_LIMIT))
    offset = read("offset", whole_number(0, MAX_GROUP_OFFSET))
    if reader.problems:
        raise ParamError(reader.problems)
    return GroupQuery(
        resolution=default_resolution if resolution is None else resolution,
        bucket_minutes=default_bucket(grid) if bucket is None else bucket,
        region=region,
        datasource=datasource,
        min_trips=1 if min_trips is None else min_trips,
        limit=DEFAULT_GROUP_LIMIT if limit is None else limit,
        offset=0 if offset is None else offset,
    )
