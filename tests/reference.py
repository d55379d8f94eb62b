"""A plain-Python statement of DESIGN.md's weekly average, to check the SQL answers against.

Deliberately written another way than the product code: weeks come from
`date.fromisocalendar`, the span is found by walking weeks and testing overlap with the
range, and points are tested against the box with float comparisons.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from tripflow.records import Trip, check_header, check_row


@dataclass(frozen=True)
class SampleRow:
    """One CSV row: its raw fields and the typed trip."""

    fields: tuple[str, ...]
    trip: Trip


def read_trips(path: Path) -> list[SampleRow]:
    """Read every valid row of a trips CSV file."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        positions = check_header(next(reader))
        rows = []
        for fields in reader:
            checked = check_row(fields, positions)
            if isinstance(checked, Trip):
                rows.append(SampleRow(tuple(fields), checked))
        return rows


def iso_monday(moment: datetime) -> date:
    """Return the Monday of a moment's ISO week, through its ISO calendar triple."""
    year, week, _ = moment.isocalendar()
    return date.fromisocalendar(year, week, 1)


def _inside(lon: float, lat: float, bbox: tuple[float, float, float, float]) -> bool:
    min_lon, min_lat, max_lon, max_lat = bbox
    return min_lon <= lon <= max_lon and min_lat <= lat <= max_lat


def _matches(trip: Trip, bbox: tuple[float, float, float, float] | None, match: str) -> bool:
    if bbox is None:
        return True
    origin = _inside(trip.origin_lon, trip.origin_lat, bbox)
    destination = _inside(trip.destination_lon, trip.destination_lat, bbox)
    return {
        "both": origin and destination,
        "origin": origin,
        "destination": destination,
        "either": origin or destination,
    }[match]


def weekly_average(
    trips: list[Trip],
    *,
    bbox: tuple[float, float, float, float] | None = None,
    region: str | None = None,
    datasource: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    match: str = "both",
) -> dict[str, Any]:
    """Compute trips, weeks, average, first/last week and the series the API must answer."""
    pool = [
        trip
        for trip in trips
        if (region is None or trip.region == region)
        and (datasource is None or trip.datasource == datasource)
    ]
    # The range the span must cover, as a half-open interval of moments.
    lower = start if start is not None else min((t.datetime for t in pool), default=None)
    upper: datetime | None
    if end is not None:
        upper = end
    else:
        latest = max((t.datetime for t in pool), default=None)
        upper = latest + timedelta(microseconds=1) if latest is not None else None

    span: list[date] = []
    if lower is not None and upper is not None and lower < upper:
        monday = iso_monday(lower)
        while datetime.combine(monday, datetime.min.time()) < upper:
            span.append(monday)
            monday += timedelta(days=7)

    matching = [
        trip
        for trip in pool
        if (start is None or trip.datetime >= start)
        and (end is None or trip.datetime < end)
        and _matches(trip, bbox, match)
    ]
    per_week = Counter(iso_monday(trip.datetime) for trip in matching)
    assert set(per_week) <= set(span), "a matching trip fell outside the span"
    weeks = len(span)
    total = len(matching)
    return {
        "trips": total,
        "weeks": weeks,
        "weekly_average": total / weeks if weeks else 0.0,
        "first_week": span[0].isoformat() if span else None,
        "last_week": span[-1].isoformat() if span else None,
        "series": [
            {
                "week": "{}-W{:02d}".format(*monday.isocalendar()[:2]),
                "week_start": monday.isoformat(),
                "trips": per_week[monday],
            }
            for monday in span
        ],
    }
