"""Similar-trip groups: trips with the same region, H3 cell of each end and time-of-day
bucket, kept in every segment of the serving copy and summed over segments when asked.

Each segment counts its trips per (resolution, region, datasource, origin cell,
destination cell, bucket of the copy's width) when it is written, for every resolution
the settings name. A question asks for one kept resolution and any bucket width that is a
multiple of the kept one (a bucket of the width asked is a union of kept buckets), so the
answer is exact: the same as grouping the trips themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import h3
import h3.api.basic_int as h3_int
import pyarrow as pa
from duckdb.func import PythonUDFType

from tripflow.config import DEFAULT_GROUP_MINUTES, DEFAULT_GROUP_RESOLUTIONS, MINUTES_PER_DAY


@dataclass(frozen=True)
class GroupGrid:
    """The H3 resolutions and the bucket width in minutes a segment keeps groups at."""

    resolutions: frozenset[int]
    minutes: int

    def serves(self, resolution: int, bucket_minutes: int) -> bool:
        """Tell whether groups of this resolution and bucket width can be summed from it."""
        return resolution in self.resolutions and bucket_minutes % self.minutes == 0

    def to_dict(self) -> dict[str, Any]:
        """Return the grid as a segment manifest stores it."""
        return {"resolutions": sorted(self.resolutions), "minutes": self.minutes}

    @classmethod
    def default(cls) -> GroupGrid:
        """Return the grid of the default settings."""
        return cls(frozenset(DEFAULT_GROUP_RESOLUTIONS), DEFAULT_GROUP_MINUTES)

    @classmethod
    def from_dict(cls, content: object) -> GroupGrid | None:
        """Read a manifest's grid; None when it has none (a segment written before groups)."""
        if not isinstance(content, dict):
            return None
        try:
            resolutions = frozenset(int(item) for item in content["resolutions"])
            minutes = int(content["minutes"])
        except (KeyError, TypeError, ValueError):
            return None
        return cls(resolutions, minutes)


@dataclass(frozen=True)
class GroupQuery:
    """Which groups to list: the grid to group by, filters, the smallest size, a page."""

    resolution: int
    bucket_minutes: int
    region: str | None = None
    datasource: str | None = None
    min_trips: int = 1
    limit: int = 20
    offset: int = 0


@dataclass(frozen=True)
class GroupRow:
    """One group as counted: region, both cells, bucket number, trips."""

    region: str
    origin_cell: int
    destination_cell: int
    bucket: int
    trips: int


def valid_bucket_widths(kept_minutes: int) -> list[int]:
    """Return the bucket widths a copy keeping `kept_minutes` buckets can answer."""
    return [
        width
        for width in range(kept_minutes, MINUTES_PER_DAY + 1, kept_minutes)
        if MINUTES_PER_DAY % width == 0
    ]


def _cells(latitudes: pa.Array, longitudes: pa.Array, resolutions: pa.Array) -> pa.Array:
    to_cell = h3_int.latlng_to_cell
    return pa.array(
        [
            to_cell(latitude, longitude, resolution)
            for latitude, longitude, resolution in zip(
                latitudes.to_pylist(), longitudes.to_pylist(), resolutions.to_pylist(), strict=True
            )
        ],
        type=pa.int64(),
    )


def register_cell_function(duck: duckdb.DuckDBPyConnection) -> None:
    """Give a DuckDB connection `h3_cell(lat, lon, resolution)`: the H3 cell as a BIGINT."""
    duck.create_function(
        "h3_cell",
        _cells,
        ["double", "double", "integer"],
        "bigint",
        type=PythonUDFType.ARROW,
    )


def write_groups(duck: duckdb.DuckDBPyConnection, grid: GroupGrid, statement: str) -> None:
    """Write the groups of the attached `segment`'s trips at every resolution of a grid."""
    duck.execute(
        "CREATE TABLE segment.trip_groups (resolution TINYINT, region INTEGER,"
        " datasource INTEGER, origin_cell BIGINT, destination_cell BIGINT, minute SMALLINT,"
        " trips BIGINT)"
    )
    for resolution in sorted(grid.resolutions):
        duck.execute(statement, {"resolution": resolution, "minutes": grid.minutes})


def cell_json(cell: int) -> dict[str, Any]:
    """Describe a cell: its H3 id (the usual hexadecimal text) and its centre."""
    latitude, longitude = h3_int.cell_to_latlng(cell)
    return {"cell": h3.int_to_str(cell), "lon": longitude, "lat": latitude}


def clock(minute: int) -> str:
    """Write a minute of the day as HH:MM (24:00 for the day's end)."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


def group_json(row: GroupRow, bucket_minutes: int, weeks: int) -> dict[str, Any]:
    """Describe one counted group as the API answers it."""
    start = row.bucket * bucket_minutes
    return {
        "region": row.region,
        "origin": cell_json(row.origin_cell),
        "destination": cell_json(row.destination_cell),
        "time_of_day": {"from": clock(start), "to": clock(start + bucket_minutes)},
        "trips": row.trips,
        "weekly_average": row.trips / weeks if weeks else 0.0,
    }
