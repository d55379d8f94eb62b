"""ISO weeks and the weekly-average answer: the pure part of the API's main question.

The definitions are DESIGN.md's "Weekly average in an area": the span is every ISO week
(Monday 00:00) from the week of the start to the week of the end, weeks without trips count,
and `weekly_average = trips / weeks`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

# About 100 years of weeks: enough for any real data set, small enough that the per-week
# series of an answer stays a few hundred kilobytes.
MAX_SPAN_WEEKS = 5300

_WEEK = timedelta(days=7)
_MICROSECOND = timedelta(microseconds=1)


class Match(StrEnum):
    """Which end of a trip must lie inside the bounding box."""

    BOTH = "both"
    ORIGIN = "origin"
    DESTINATION = "destination"
    EITHER = "either"


class SpanTooLongError(ValueError):
    """A span of weeks is longer than MAX_SPAN_WEEKS."""

    def __init__(self, weeks: int, first: date | None = None, last: date | None = None) -> None:
        super().__init__(
            f"the span covers {weeks} weeks, more than the limit of {MAX_SPAN_WEEKS} "
            "(about 100 years): ask for a shorter range"
        )
        self.weeks = weeks
        # The Mondays of the span's first and last weeks.
        self.first = first
        self.last = last


@dataclass(frozen=True)
class BBox:
    """A longitude/latitude box in EPSG:4326; its edges belong to it."""

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def as_list(self) -> list[float]:
        """Return the box as [min_lon, min_lat, max_lon, max_lat]."""
        return [self.min_lon, self.min_lat, self.max_lon, self.max_lat]


@dataclass(frozen=True)
class AreaQuery:
    """One weekly-average question: area, filters, `[start, end)` range and match mode."""

    bbox: BBox | None = None
    region: str | None = None
    datasource: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    match: Match = Match.BOTH

    def to_json(self) -> dict[str, Any]:
        """Return the query as the API echoes it."""
        return {
            "bbox": self.bbox.as_list() if self.bbox else None,
            "region": self.region,
            "datasource": self.datasource,
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
            "match": str(self.match),
        }


def week_start(moment: datetime | date) -> date:
    """Return the Monday of the ISO week that holds a moment."""
    day = moment.date() if isinstance(moment, datetime) else moment
    return day - timedelta(days=day.weekday())


def week_label(monday: date) -> str:
    """Return the ISO week name of a Monday, such as 2019-W01 for 2018-12-31."""
    year, week, _ = monday.isocalendar()
    return f"{year:04d}-W{week:02d}"


def week_span(first: datetime | date, last_inclusive: datetime | date) -> list[date]:
    """Return the Mondays of every ISO week from the week of `first` to that of `last`."""
    first_monday = week_start(first)
    last_monday = week_start(last_inclusive)
    if last_monday < first_monday:
        return []
    count = (last_monday - first_monday).days // 7 + 1
    if count > MAX_SPAN_WEEKS:
        raise SpanTooLongError(count, first_monday, last_monday)
    return [first_monday + _WEEK * index for index in range(count)]


def range_span(start: datetime, end: datetime) -> list[date]:
    """Return the Mondays of every ISO week that the half-open range `[start, end)` touches."""
    if end <= start:
        return []
    # The last instant inside the range decides the last week, so an end at Monday 00:00
    # does not pull in a week the range never reaches.
    return week_span(start, end - _MICROSECOND)


def query_span(
    start: datetime | None,
    end: datetime | None,
    earliest: datetime | None,
    latest: datetime | None,
) -> list[date]:
    """Return the span of a query: its own range, completed by the earliest/latest trip."""
    if start is not None and end is not None:
        return range_span(start, end)
    lower = start if start is not None else earliest
    if lower is None:
        return []
    if end is not None:
        return range_span(lower, end)
    if latest is None or latest < lower:
        return []
    return week_span(lower, latest)


@dataclass(frozen=True)
class WeeklyAverage:
    """The answer to an AreaQuery: the span of weeks and the matching trips in each."""

    query: AreaQuery
    span: Sequence[date]
    counts: Mapping[date, int] = field(default_factory=dict)

    @property
    def trips(self) -> int:
        """Return the number of matching trips in the span."""
        return sum(self.counts.get(monday, 0) for monday in self.span)

    @property
    def weeks(self) -> int:
        """Return the number of weeks in the span, empty weeks included."""
        return len(self.span)

    @property
    def weekly_average(self) -> float:
        """Return trips per week over the span (0.0 for an empty span)."""
        return self.trips / self.weeks if self.weeks else 0.0

    def to_json(self) -> dict[str, Any]:
        """Return the answer as the API sends it."""
        return {
            "trips": self.trips,
            "weeks": self.weeks,
            "weekly_average": self.weekly_average,
            "first_week": self.span[0].isoformat() if self.span else None,
            "last_week": self.span[-1].isoformat() if self.span else None,
            "series": [
                {
                    "week": week_label(monday),
                    "week_start": monday.isoformat(),
                    "trips": self.counts.get(monday, 0),
                }
                for monday in self.span
            ],
            "query": self.query.to_json(),
        }
