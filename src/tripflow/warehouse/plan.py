"""How a weekly average is counted: from the weekly summary, or from the base table.

`trip_week_summary` holds, per (region, datasource, ISO week), the number of trips and the
extent (bounding box) of their origins and of their destinations. For one question each
such group is answered in one of four ways, all exact:

- ALL: every trip of the group matches (the week lies inside the range and the relevant
  extents lie inside the box): its count comes from the summary.
- NONE: no trip can match (an extent that must be inside the box lies wholly outside it).
- SCAN: count the matching trips of the group in the base table, through the GiST index.
- COMPLEMENT: count the trips of the group that do NOT match, in the base table, through
  the GiST index over the parts of the extents outside the box, and subtract them from the
  summary's count. Cheaper than SCAN when the box covers most of the group's extent, as a
  box around a whole city does.

The choice between SCAN and COMPLEMENT only changes the work, never the answer; it is made
from the share of each extent's area that the box covers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from tripflow.weeks import AreaQuery, BBox, Match, WeeklyAverage, query_span

_WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Extent:
    """The closed bounding box of one end of a group's trips."""

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def union(self, other: Extent) -> Extent:
        """Return the smallest extent holding both."""
        return Extent(
            min(self.min_lon, other.min_lon),
            min(self.min_lat, other.min_lat),
            max(self.max_lon, other.max_lon),
            max(self.max_lat, other.max_lat),
        )

    def outside_strips(self, box: BBox) -> list[Extent]:
        """Return closed strips that together cover every point of the extent outside the
        box (they may also touch the box's edges, which an exact test then sorts out)."""
        strips = []
        if self.min_lon < box.min_lon:
            strips.append(Extent(self.min_lon, self.min_lat, box.min_lon, self.max_lat))
        if box.max_lon < self.max_lon:
            strips.append(Extent(box.max_lon, self.min_lat, self.max_lon, self.max_lat))
        low_lon = max(self.min_lon, box.min_lon)
        high_lon = min(self.max_lon, box.max_lon)
        if low_lon <= high_lon:
            if self.min_lat < box.min_lat:
                strips.append(Extent(low_lon, self.min_lat, high_lon, box.min_lat))
            if box.max_lat < self.max_lat:
                strips.append(Extent(low_lon, box.max_lat, high_lon, self.max_lat))
        return strips


def union_of(extents: Sequence[Extent]) -> Extent:
    """Return the smallest extent holding all of some (at least one) extents."""
    merged = extents[0]
    for extent in extents[1:]:
        merged = merged.union(extent)
    return merged


class Way(IntEnum):
    """How one group is counted for one question."""

    NONE = 0
    ALL = 1
    SCAN = 2
    COMPLEMENT = 3


@dataclass(frozen=True)
class Group:
    """One row of the weekly summary."""

    region: str
    datasource: str
    week: date
    trips: int
    origin: Extent
    destination: Extent

    @property
    def key(self) -> tuple[str, str, date]:
        """Return (region, datasource, week)."""
        return (self.region, self.datasource, self.week)


# Column positions of the extents in Summary.origin / Summary.destination.
_MIN_LON, _MIN_LAT, _MAX_LON, _MAX_LAT = range(4)


class Summary:
    """The weekly summary as columns, so that one question classifies every group at once.

    Built from the rows of week_summary.sql: region, datasource, week, trips, first_trip,
    last_trip, then the origin extent and the destination extent (min lon, min lat, max lon,
    max lat each)."""

    def __init__(self, rows: Sequence[Sequence[Any]]) -> None:
        self.size = len(rows)
        self.regions = np.array([row[0] for row in rows], dtype=object)
        self.datasources = np.array([row[1] for row in rows], dtype=object)
        self.weeks = np.array([row[2] for row in rows], dtype="datetime64[D]")
        self.trips = np.array([row[3] for row in rows], dtype=np.int64)
        self.first_trip = np.array([row[4] for row in rows], dtype="datetime64[us]")
        self.last_trip = np.array([row[5] for row in rows], dtype="datetime64[us]")
        self.origin = np.array([row[6:10] for row in rows], dtype=np.float64).reshape(-1, 4)
        self.destination = np.array([row[10:14] for row in rows], dtype=np.float64).reshape(-1, 4)

    def selected(self, query: AreaQuery) -> npt.NDArray[np.bool_]:
        """Return which groups the query's region/datasource filters keep."""
        keep = np.ones(self.size, dtype=bool)
        if query.region is not None:
            keep &= self.regions == query.region
        if query.datasource is not None:
            keep &= self.datasources == query.datasource
        return keep

    def bounds(self, keep: npt.NDArray[np.bool_]) -> tuple[datetime | None, datetime | None]:
        """Return the earliest and the latest trip of the kept groups."""
        if not keep.any():
            return None, None
        return _moment(self.first_trip[keep].min()), _moment(self.last_trip[keep].max())

    def groups(self, indices: npt.NDArray[np.intp]) -> list[Group]:
        """Return some groups as objects, converted column by column (one question may
        need thousands)."""
        weeks = self.weeks[indices].astype(object).tolist()
        origins = self.origin[indices].tolist()
        destinations = self.destination[indices].tolist()
        return [
            Group(str(region), str(datasource), week, int(trips), Extent(*o), Extent(*d))
            for region, datasource, week, trips, o, d in zip(
                self.regions[indices].tolist(),
                self.datasources[indices].tolist(),
                weeks,
                self.trips[indices].tolist(),
                origins,
                destinations,
                strict=True,
            )
        ]

    def ways(
        self,
        query: AreaQuery,
        keep: npt.NDArray[np.bool_],
        window: tuple[datetime, datetime],
        complement_is_cheaper: bool | None = None,
    ) -> npt.NDArray[np.int8]:
        """Decide, for every group, how it is counted (a Way per group; NONE if not kept).

        `complement_is_cheaper` forces the choice between SCAN and COMPLEMENT (tests)."""
        start = np.datetime64(window[0], "us")
        end = np.datetime64(window[1], "us")
        monday = self.weeks.astype("datetime64[us]")
        whole_week = (start <= monday) & (monday + np.timedelta64(7, "D") <= end)
        # A group cut by the range has trips in it only if its times reach into the range.
        reaches = whole_week | ((self.last_trip >= start) & (self.first_trip < end))
        keep = keep & reaches
        ways = np.full(self.size, Way.NONE, dtype=np.int8)
        box = query.bbox
        if box is None:
            ways[keep & whole_week] = Way.ALL
            ways[keep & ~whole_week] = Way.SCAN
            return ways
        o_in, o_out = _inside(self.origin, box), _disjoint(self.origin, box)
        d_in, d_out = _inside(self.destination, box), _disjoint(self.destination, box)
        if query.match is Match.BOTH:
            everything, nothing = o_in & d_in, o_out | d_out
        elif query.match is Match.ORIGIN:
            everything, nothing = o_in, o_out
        elif query.match is Match.DESTINATION:
            everything, nothing = d_in, d_out
        else:
            everything, nothing = o_in | d_in, o_out & d_out
        candidates = keep & ~nothing
        ways[candidates & everything & whole_week] = Way.ALL
        # The summary has no count for part of a week, so there is nothing to subtract from.
        ways[candidates & ~whole_week] = Way.SCAN
        partly = candidates & whole_week & ~everything
        if complement_is_cheaper is None:
            cheaper = _complement_cheaper(self.origin, self.destination, query.match, box)
        else:
            cheaper = np.full(self.size, complement_is_cheaper)
        ways[partly & cheaper] = Way.COMPLEMENT
        ways[partly & ~cheaper] = Way.SCAN
        return ways


def _moment(value: np.datetime64) -> datetime:
    return datetime.fromisoformat(str(value.astype("datetime64[us]")))


def _day(value: np.datetime64) -> date:
    return date.fromisoformat(str(value.astype("datetime64[D]")))


def _inside(extents: npt.NDArray[np.float64], box: BBox) -> npt.NDArray[np.bool_]:
    return (
        (box.min_lon <= extents[:, _MIN_LON])
        & (extents[:, _MAX_LON] <= box.max_lon)
        & (box.min_lat <= extents[:, _MIN_LAT])
        & (extents[:, _MAX_LAT] <= box.max_lat)
    )


def _disjoint(extents: npt.NDArray[np.float64], box: BBox) -> npt.NDArray[np.bool_]:
    return (
        (extents[:, _MAX_LON] < box.min_lon)
        | (box.max_lon < extents[:, _MIN_LON])
        | (extents[:, _MAX_LAT] < box.min_lat)
        | (box.max_lat < extents[:, _MIN_LAT])
    )


def _covered_share(extents: npt.NDArray[np.float64], box: BBox) -> npt.NDArray[np.float64]:
    # Share of each extent's area inside the box; 0.5 for an extent without area.
    width = extents[:, _MAX_LON] - extents[:, _MIN_LON]
    height = extents[:, _MAX_LAT] - extents[:, _MIN_LAT]
    overlap_width = np.clip(
        np.minimum(extents[:, _MAX_LON], box.max_lon)
        - np.maximum(extents[:, _MIN_LON], box.min_lon),
        0.0,
        None,
    )
    overlap_height = np.clip(
        np.minimum(extents[:, _MAX_LAT], box.max_lat)
        - np.maximum(extents[:, _MIN_LAT], box.min_lat),
        0.0,
        None,
    )
    area = width * height
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(area > 0, overlap_width * overlap_height / area, 0.5)
    return np.asarray(share, dtype=np.float64)


def _complement_cheaper(
    origin: npt.NDArray[np.float64],
    destination: npt.NDArray[np.float64],
    match: Match,
    box: BBox,
) -> npt.NDArray[np.bool_]:
    # Shares of trips the two ways would visit, assuming points spread evenly over their
    # extent: a guess that only decides speed, never the answer.
    o_share = _covered_share(origin, box)
    d_share = _covered_share(destination, box)
    if match is Match.ORIGIN:
        scan, complement = o_share, 1 - o_share
    elif match is Match.DESTINATION:
        scan, complement = d_share, 1 - d_share
    elif match is Match.BOTH:
        scan, complement = np.minimum(o_share, d_share), (1 - o_share) + (1 - d_share)
    else:
        scan, complement = o_share + d_share, np.minimum(1 - o_share, 1 - d_share)
    return np.asarray(complement < scan)


@dataclass(frozen=True)
class Plan:
    """How one question is answered: the span, the window trips are counted in, the
    counts the summary gives whole, and the groups an engine must count in the trips.

    Executors return counts per group key for `scan` (matching trips) and `complement`
    (matching trips of whole weeks, found as the group's count less the trips that do not
    match); `answer` adds them to the summary's."""

    query: AreaQuery
    span: list[date]
    window: tuple[datetime, datetime] | None
    whole: dict[date, int]
    scan: list[Group]
    complement: list[Group]

    @property
    def needs_trips(self) -> bool:
        """Tell whether some group must be counted in the trips themselves."""
        return bool(self.scan or self.complement)

    def answer(self, counted: dict[tuple[str, str, date], int]) -> WeeklyAverage:
        """Return the answer: the summary's whole groups plus the executor's counts of the
        scanned and complemented groups (other keys are ignored)."""
        counts = dict(self.whole)
        for group in (*self.scan, *self.complement):
            trips = counted.get(group.key, 0)
            if trips:
                counts[group.week] = counts.get(group.week, 0) + trips
        return WeeklyAverage(query=self.query, span=self.span, counts=counts)


def plan_question(
    summary: Summary, query: AreaQuery, complement_is_cheaper: bool | None = None
) -> Plan:
    """Decide how every group of the summary is counted for a question."""
    keep = summary.selected(query)
    earliest, latest = summary.bounds(keep)
    span = query_span(query.start, query.end, earliest, latest)
    if not span:
        return Plan(query, span, None, {}, [], [])
    # Count only inside the span, and inside the range where one was given.
    window = (
        query.start if query.start else monday_midnight(span[0]),
        query.end if query.end else monday_midnight(span[-1] + _WEEK),
    )
    keep &= (summary.weeks >= np.datetime64(span[0])) & (summary.weeks <= np.datetime64(span[-1]))
    ways = summary.ways(query, keep, window, complement_is_cheaper=complement_is_cheaper)
    whole: dict[date, int] = {}
    every = ways == Way.ALL
    for week, trips in zip(summary.weeks[every], summary.trips[every], strict=True):
        if trips:
            monday = _day(week)
            whole[monday] = whole.get(monday, 0) + int(trips)
    return Plan(
        query,
        span,
        window,
        whole,
        summary.groups(np.flatnonzero(ways == Way.SCAN)),
        summary.groups(np.flatnonzero(ways == Way.COMPLEMENT)),
    )


def monday_midnight(day: date) -> datetime:
    """Return 00:00 of a day."""
    return datetime.combine(day, time())


def week_ranges(
    weeks: Iterable[date], window: tuple[datetime, datetime]
) -> list[tuple[datetime, datetime]]:
    """Return the half-open time ranges covering the given weeks, adjacent weeks merged,
    clipped to the window."""
    ranges: list[tuple[datetime, datetime]] = []
    for week in sorted(set(weeks)):
        start = max(monday_midnight(week), window[0])
        end = min(monday_midnight(week) + _WEEK, window[1])
        if ranges and ranges[-1][1] >= start:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], end))
        else:
            ranges.append((start, end))
    return ranges
