"""The DuckDB executor: counts a plan's groups in the serving copy's segments.

Every count it runs is a conjunction of closed or half-open ranges on one end's longitude
and latitude, so DuckDB prunes the Parquet row groups whose statistics miss it (the rows
are sorted by region, then by place of the origin). A match mode is a sum of such counts:

- scanned groups count the trips that match: `origin` and `destination` one box each,
  `both` the two boxes together, `either` as the origins inside plus the destinations
  inside whose origin is outside;
- complemented groups (whole weeks the summary counts, where the box covers most of the
  points) count the trips that do NOT match, in the strips of the plane around the box,
  and subtract them from the summary's count: the row groups inside the box are never
  read. The four strips (west, east, and south and north between them) share no point,
  so no trip is subtracted twice.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import duckdb

from tripflow.serving.copy import Segment, duck_literal
from tripflow.serving.groups import GroupQuery, GroupRow
from tripflow.warehouse.plan import Extent, Group, Plan, union_of, week_ranges
from tripflow.weeks import BBox, Match

GroupKey = tuple[str, str, date]


# Each segment holds its rows sorted by place of the origin and of the destination, and
# their times alone sorted by time (for questions without a box).
TABLES = {"origin": "trips", "destination": "trips_by_destination", "time": "trips_by_time"}


@dataclass(frozen=True)
class Condition:
    """A conjunction of comparisons on point columns, as SQL with its bound values, and the
    end whose sorted table prunes it best."""

    text: str
    values: tuple[float, ...]
    end: str = "origin"

    def __and__(self, other: Condition) -> Condition:
        return Condition(f"{self.text} AND {other.text}", self.values + other.values, self.end)

    def negated(self) -> Condition:
        """Return the condition that holds where this one does not."""
        return Condition(f"NOT ({self.text})", self.values, self.end)

    def on(self, end: str) -> Condition:
        """Return the same condition, read from the table sorted by `end`."""
        return Condition(self.text, self.values, end)


def inside(end: str, box: BBox) -> Condition:
    """One end of the trip inside the closed box."""
    return Condition(
        f"{end}_lon BETWEEN ? AND ? AND {end}_lat BETWEEN ? AND ?",
        (box.min_lon, box.max_lon, box.min_lat, box.max_lat),
        end,
    )


def outside(end: str, box: BBox, extent: Extent) -> list[Condition]:
    """One end of the trip outside the box, as disjoint strips; strips the extent of the
    points does not reach are left out."""
    strips = []
    if extent.min_lon < box.min_lon:
        strips.append(Condition(f"{end}_lon < ?", (box.min_lon,), end))
    if extent.max_lon > box.max_lon:
        strips.append(Condition(f"{end}_lon > ?", (box.max_lon,), end))
    if max(extent.min_lon, box.min_lon) <= min(extent.max_lon, box.max_lon):
        between = f"{end}_lon BETWEEN ? AND ?"
        if extent.min_lat < box.min_lat:
            values = (box.min_lon, box.max_lon, box.min_lat)
            strips.append(Condition(f"{between} AND {end}_lat < ?", values, end))
        if extent.max_lat > box.max_lat:
            values = (box.min_lon, box.max_lon, box.max_lat)
            strips.append(Condition(f"{between} AND {end}_lat > ?", values, end))
    return strips


def matching_terms(match: Match, box: BBox) -> list[tuple[int, Condition]]:
    """Signed conditions whose counts add up to the trips that match."""
    origin, destination = inside("origin", box), inside("destination", box)
    if match is Match.ORIGIN:
        return [(1, origin)]
    if match is Match.DESTINATION:
        return [(1, destination)]
    if match is Match.BOTH:
        return [(1, origin & destination)]
    # Either end inside: the origins inside, plus the destinations inside whose origin is
    # not (two counts, each pruned by its own sorted table, where origin + destination -
    # both took three).
    return [(1, origin), (1, destination & origin.negated())]


def missing_terms(
    match: Match, box: BBox, origin_extent: Extent, destination_extent: Extent
) -> list[Condition]:
    """Conditions whose counts add up to the trips that do not match."""
    origin_out = outside("origin", box, origin_extent)
    destination_out = outside("destination", box, destination_extent)
    if match is Match.ORIGIN:
        return origin_out
    if match is Match.DESTINATION:
        return destination_out
    if match is Match.BOTH:
        # Origin inside and destination outside: the destination's strips are what is
        # selective when the box covers most of the points.
        origin_in = inside("origin", box)
        return origin_out + [(origin_in & strip).on("destination") for strip in destination_out]
    return [first & second for first in origin_out for second in destination_out]


@dataclass(frozen=True)
class Attached:
    """A segment attached read-only to the process's DuckDB, with its name codes."""

    alias: str
    codes: dict[tuple[str, str], int]
    names: dict[tuple[str, int], str]

    def code(self, kind: str, name: str) -> int | None:
        """Return the segment's code of a region or datasource name, if it has one."""
        return self.codes.get((kind, name))


class Engine:
    """One in-memory DuckDB per process, opened on first use (after gunicorn forks),
    shared by the process's threads through cursors. Segments are attached read-only as
    readers first need them; their files never change once written."""

    def __init__(self, *, memory_limit: str = "512MB", threads: int = 2) -> None:
        self.memory_limit = memory_limit
        self.threads = threads
        self._database: duckdb.DuckDBPyConnection | None = None
        self._owner = 0
        self._attached: dict[str, tuple[Segment, Attached]] = {}
        self._lock = threading.Lock()

    def _open(self) -> duckdb.DuckDBPyConnection:
        if self._database is None or self._owner != os.getpid():
            database = duckdb.connect(":memory:")
            database.execute(f"SET threads = {int(self.threads)}")
            database.execute("SET memory_limit = ?", [self.memory_limit])
            self._database, self._owner, self._attached = database, os.getpid(), {}
        return self._database

    def attach(
        self, segments: Sequence[Segment]
    ) -> tuple[duckdb.DuckDBPyConnection, list[Attached]]:
        """Attach the segments not attached yet; return a cursor and the segments that
        hold rows, attached."""
        with self._lock:
            database = self._open()
            for segment in segments:
                if segment.path is None or segment.identity in self._attached:
                    continue
                alias = f"segment_{segment.identity}"
                database.execute(f"ATTACH {duck_literal(str(segment.path))} AS {alias} (READ_ONLY)")
                codes: dict[tuple[str, str], int] = {}
                names: dict[tuple[str, int], str] = {}
                for kind, code, name in database.execute(
                    f"SELECT kind, code, name FROM {alias}.names"
                ).fetchall():
                    codes[(str(kind), str(name))] = int(code)
                    names[(str(kind), int(code))] = str(name)
                self._attached[segment.identity] = (segment, Attached(alias, codes, names))
                # DuckDB reads a table's row-group statistics on first use: a filter no
                # row group can hold reads them all now, not during a reader's question.
                for table in TABLES.values():
                    database.execute(
                        f"SELECT count(*) FROM {alias}.{table}"
                        " WHERE region < 0 OR datasource < 0 OR datetime < TIMESTAMP '0001-01-01'"
                    ).fetchall()
            self._detach_removed(database, {segment.identity for segment in segments})
            chosen = [self._attached[segment.identity][1] for segment in segments if segment.path]
            return database.cursor(), chosen

    def _detach_removed(self, database: duckdb.DuckDBPyConnection, wanted: set[str]) -> None:
        # A segment whose file is gone (replaced by a rebuild) is detached once no reader
        # asks for it; a query still reading it keeps the attached database alive.
        for identity, (segment, attached) in list(self._attached.items()):
            if identity in wanted or segment.path is None or segment.path.exists():
                continue
            database.execute(f"DETACH {attached.alias}")
            del self._attached[identity]

    def group_counts(self, segments: Sequence[Segment]) -> dict[GroupKey, int]:
        """Return the trips per (region, datasource, week) of some segments."""
        cursor, attached = self.attach(segments)
        counts: dict[GroupKey, int] = {}
        with cursor:
            for item in attached:
                rows = cursor.execute(
                    f"SELECT region, datasource, week, count(*) FROM {item.alias}.trips"
                    " GROUP BY ALL"
                ).fetchall()
                for region, datasource, week, trips in rows:
                    key = (
                        item.names[("region", region)],
                        item.names[("datasource", datasource)],
                        week,
                    )
                    counts[key] = counts.get(key, 0) + int(trips)
        return counts

    def count_groups(self, segments: Sequence[Segment], plan: Plan) -> dict[GroupKey, int]:
        """Count a plan's scanned and complemented groups in the segments."""
        counted: dict[GroupKey, int] = {}
        if plan.window is None or not plan.needs_trips:
            return counted
        query, window = plan.query, plan.window
        terms: list[tuple[str, int, list[Group], Condition]] = []
        if plan.scan:
            matching = (
                matching_terms(query.match, query.bbox)
                if query.bbox is not None
                else [(1, Condition("TRUE", (), "time"))]
            )
            terms += [("scan", sign, plan.scan, condition) for sign, condition in matching]
        if plan.complement and query.bbox is not None:
            origin = union_of([group.origin for group in plan.complement])
            destination = union_of([group.destination for group in plan.complement])
            terms += [
                ("complement", 1, plan.complement, condition)
                for condition in missing_terms(query.match, query.bbox, origin, destination)
            ]
        cursor, attached = self.attach(segments)
        parts = [
            part
            for index, (_, _, groups, condition) in enumerate(terms)
            for number, item in enumerate(attached)
            if (part := _select(index, number, item, plan, groups, window, condition))
        ]
        rows: list[Any] = []
        with cursor:
            if parts:
                statement = " UNION ALL ".join(text for text, _ in parts)
                values = [value for _, part_values in parts for value in part_values]
                rows = cursor.execute(statement, values).fetchall()
        found: dict[tuple[str, GroupKey], int] = {}
        for term, number, region, datasource, week, trips in rows:
            kind, sign = terms[term][0], terms[term][1]
            names = attached[number].names
            key = (names[("region", region)], names[("datasource", datasource)], week)
            found[(kind, key)] = found.get((kind, key), 0) + sign * int(trips)
        for group in plan.scan:
            counted[group.key] = found.get(("scan", group.key), 0)
        for group in plan.complement:
            counted[group.key] = group.trips - found.get(("complement", group.key), 0)
        return counted

    def trip_groups(
        self, segments: Sequence[Segment], query: GroupQuery
    ) -> tuple[list[GroupRow], int]:
        """Sum the segments' kept groups into the query's grid; return one page of the
        groups with at least min_trips trips (largest first) and how many there are."""
        cursor, attached = self.attach(segments)
        parts: list[str] = []
        values: list[Any] = []
        for item in attached:
            filters = ["resolution = ?"]
            part_values: list[Any] = [query.resolution]
            for kind, name in (("region", query.region), ("datasource", query.datasource)):
                if name is None:
                    continue
                code = item.code(kind, name)
                if code is None:
                    break
                filters.append(f"{kind} = ?")
                part_values.append(code)
            else:
                # Summed on the segment's integer codes first (several times faster than
                # on names), named after: the join then sees the groups, not their parts.
                parts.append(
                    "SELECT regions.name AS region, origin_cell, destination_cell, bucket, trips"
                    " FROM (SELECT region, origin_cell, destination_cell,"
                    f" minute // {int(query.bucket_minutes)} AS bucket, sum(trips) AS trips"
                    f" FROM {item.alias}.trip_groups WHERE {' AND '.join(filters)}"
                    " GROUP BY ALL) AS summed"
                    f" JOIN {item.alias}.names AS regions"
                    " ON regions.kind = 'region' AND regions.code = summed.region"
                )
                values += part_values
        if not parts:
            cursor.close()
            return [], 0
        grouped = (
            f"SELECT * FROM ({parts[0]}) WHERE trips >= ?"
            if len(parts) == 1
            else "SELECT region, origin_cell, destination_cell, bucket, sum(trips) AS trips"
            f" FROM ({' UNION ALL '.join(parts)}) GROUP BY ALL HAVING sum(trips) >= ?"
        )
        values.append(query.min_trips)
        # Ties are ordered by every key, so pages never overlap or skip a group.
        with cursor:
            rows = cursor.execute(
                f"WITH grouped AS MATERIALIZED ({grouped})"
                " SELECT *, (SELECT count(*) FROM grouped) FROM grouped"
                " ORDER BY trips DESC, region, origin_cell, destination_cell, bucket"
                " LIMIT ? OFFSET ?",
                [*values, query.limit, query.offset],
            ).fetchall()
            if rows:
                total = int(rows[0][5])
            else:
                counted = cursor.execute(f"SELECT count(*) FROM ({grouped})", values).fetchone()
                total = int(counted[0]) if counted else 0
        found = [
            GroupRow(str(region), int(origin), int(destination), int(bucket), int(trips))
            for region, origin, destination, bucket, trips, _ in rows
        ]
        return found, total


def _select(
    term: int,
    number: int,
    segment: Attached,
    plan: Plan,
    groups: list[Group],
    window: tuple[datetime, datetime],
    condition: Condition,
) -> tuple[str, list[Any]] | None:
    """One counting SELECT of one term over one segment, restricted to the groups'
    regions and weeks; None when the segment holds none of those regions."""
    codes = sorted(
        code
        for code in (segment.code("region", region) for region in {g.region for g in groups})
        if code is not None
    )
    if not codes:
        return None
    values: list[Any] = [*codes]
    filters = [f"region IN ({', '.join('?' for _ in codes)})"]
    if plan.query.datasource is not None:
        datasource = segment.code("datasource", plan.query.datasource)
        if datasource is None:
            return None
        filters.append("datasource = ?")
        values.append(datasource)
    ranges = week_ranges((group.week for group in groups), window)
    filters.append("(" + " OR ".join("(datetime >= ? AND datetime < ?)" for _ in ranges) + ")")
    for start, end in ranges:
        values += [start, end]
    filters.append(condition.text)
    values += condition.values
    text = (
        f"SELECT {int(term)} AS term, {int(number)} AS segment, region, datasource, week,"
        f" count(*) AS trips FROM {segment.alias}.{TABLES[condition.end]} WHERE "
        + " AND ".join(filters)
        + " GROUP BY ALL"
    )
    return text, values
