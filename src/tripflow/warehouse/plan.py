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

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import Enum

from tripflow.weeks import AreaQuery, BBox, Match

_WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Extent:
    """The closed bounding box of one end of a group's trips."""

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def inside(self, box: BBox) -> bool:
        """Tell whether every point of the extent lies in the box (edges included)."""
        return (
            box.min_lon <= self.min_lon
            and self.max_lon <= box.max_lon
            and box.min_lat <= self.min_lat
            and self.max_lat <= box.max_lat
        )

    def disjoint(self, box: BBox) -> bool:
        """Tell whether no point of the extent can lie in the box."""
        return (
            self.max_lon < box.min_lon
            or box.max_lon < self.min_lon
            or self.max_lat < box.min_lat
            or box.max_lat < self.min_lat
        )

    def covered_share(self, box: BBox) -> float:
        """Return the share of the extent's area inside the box (0.5 when it has none)."""
        width = self.max_lon - self.min_lon
        height = self.max_lat - self.min_lat
        overlap_width = min(self.max_lon, box.max_lon) - max(self.min_lon, box.min_lon)
        overlap_height = min(self.max_lat, box.max_lat) - max(self.min_lat, box.min_lat)
        if overlap_width < 0 or overlap_height < 0:
            return 0.0
        if width <= 0 or height <= 0:
            return 0.5
        return (overlap_width * overlap_height) / (width * height)

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


@dataclass(frozen=True)
class Group:
    """One row of the weekly summary."""

    region: str
    datasource: str
    week: date
    trips: int
    first_trip: datetime
    last_trip: datetime
    origin: Extent
    destination: Extent

    @property
    def key(self) -> tuple[str, str, date]:
        """Return (region, datasource, week)."""
        return (self.region, self.datasource, self.week)


class Way(Enum):
    """How one group is counted for one question."""

    ALL = "all"
    NONE = "none"
    SCAN = "scan"
    COMPLEMENT = "complement"


def monday_midnight(day: date) -> datetime:
    """Return 00:00 of a day."""
    return datetime.combine(day, time())


def choose(group: Group, query: AreaQuery, window: tuple[datetime, datetime]) -> Way:
    """Decide how a group is counted for a question over the half-open time window."""
    start = monday_midnight(group.week)
    whole_week = window[0] <= start and start + _WEEK <= window[1]
    # Trips of the group inside the window: all of them, or only those the times allow.
    if not whole_week and (group.last_trip < window[0] or group.first_trip >= window[1]):
        return Way.NONE
    box = query.bbox
    if box is None:
        return Way.ALL if whole_week else Way.SCAN
    origin, destination = group.origin, group.destination
    if query.match is Match.BOTH:
        everything = origin.inside(box) and destination.inside(box)
        nothing = origin.disjoint(box) or destination.disjoint(box)
    elif query.match is Match.ORIGIN:
        everything, nothing = origin.inside(box), origin.disjoint(box)
    elif query.match is Match.DESTINATION:
        everything, nothing = destination.inside(box), destination.disjoint(box)
    else:
        everything = origin.inside(box) or destination.inside(box)
        nothing = origin.disjoint(box) and destination.disjoint(box)
    if nothing:
        return Way.NONE
    if everything and whole_week:
        return Way.ALL
    if not whole_week:
        # The summary has no count for part of a week, so nothing to subtract from.
        return Way.SCAN
    return Way.COMPLEMENT if _complement_is_cheaper(group, query.match, box) else Way.SCAN


def _complement_is_cheaper(group: Group, match: Match, box: BBox) -> bool:
    # Shares of trips the two ways would visit, assuming points spread evenly over their
    # extent: a guess that only decides speed.
    origin = group.origin.covered_share(box)
    destination = group.destination.covered_share(box)
    if match is Match.ORIGIN:
        scan, complement = origin, 1 - origin
    elif match is Match.DESTINATION:
        scan, complement = destination, 1 - destination
    elif match is Match.BOTH:
        scan, complement = min(origin, destination), (1 - origin) + (1 - destination)
    else:
        scan, complement = origin + destination, min(1 - origin, 1 - destination)
    return complement < scan


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
