"""Realistic trip files in the input format, generated fast and reproducibly.

Rows are built a chunk at a time as numpy arrays and formatted with pyarrow's string kernels,
so memory stays bounded whatever the row count and no Python loop runs per row. One numpy
Generator, seeded once, is consumed in a fixed order: the same arguments give byte-identical
files.

Two orders of trip times over the files (`Order`): `spread`, every file's trips drawn over
the whole of 2018, so every batch touches every week of the table (the worst case for a
table partitioned by time); and `time`, file k covering the span of days that follows file
k-1's, the way a live feed arrives.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from tripflow.records import COLUMNS, Reason

# The reasons the generator writes invalid lines for: the contract's field rules. The reasons
# of broken bytes and quoting (invalid UTF-8, unbalanced quotes, control characters, texts too
# long) are left to the bad-input tests, so a seed still writes the same bytes it always did.
GENERATED_REASONS: tuple[Reason, ...] = (
    Reason.WRONG_FIELD_COUNT,
    Reason.EMPTY_REGION,
    Reason.BAD_ORIGIN_COORD,
    Reason.ORIGIN_OUT_OF_RANGE,
    Reason.BAD_DESTINATION_COORD,
    Reason.DESTINATION_OUT_OF_RANGE,
    Reason.BAD_DATETIME,
    Reason.EMPTY_DATASOURCE,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

CHUNK_ROWS = 500_000
# Rows kept from earlier chunks so duplicates can repeat rows of earlier files too.
POOL_ROWS = 20_000
DECIMALS = 13
KM_PER_DEGREE = 111.32
# 2018-01-01 00:00:00 (a Monday) as seconds since the epoch; datetimes are wall-clock times.
YEAR_START = 1_514_764_800
HOURS_IN_YEAR = 365 * 24
DAY_SECONDS = 86_400
EPOCH = datetime(1970, 1, 1)
FILE_PATTERN = "trips-{:05d}.csv"
# Text of a datetime in the files and in summaries.
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class Order(StrEnum):
    """How trip times are laid out over a run's files."""

    SPREAD = "spread"
    TIME = "time"


@dataclass(frozen=True)
class TimeSpan:
    """Wall-clock times from `start` (included) to `end` (excluded), whole seconds."""

    start: datetime
    end: datetime

    @property
    def days(self) -> float:
        """Length in days."""
        return (self.end - self.start) / timedelta(days=1)

    def seconds(self) -> tuple[int, int]:
        """Return start and end as epoch seconds of the wall-clock time."""
        return epoch_seconds(self.start), epoch_seconds(self.end)

    def contains(self, moment: datetime) -> bool:
        """Tell whether a wall-clock time lies in the span."""
        return self.start <= moment < self.end

    def to_dict(self) -> dict[str, Any]:
        """Return the span as JSON-ready values (`end` excluded)."""
        return {
            "start": self.start.strftime(DATETIME_FORMAT),
            "end": self.end.strftime(DATETIME_FORMAT),
            "days": round(self.days, 6),
        }


def epoch_seconds(moment: datetime) -> int:
    """Return a naive wall-clock datetime as seconds since 1970-01-01 00:00:00."""
    if moment.tzinfo is not None:
        raise ValueError(f"start must be a wall-clock time without a zone, got {moment}")
    return (moment - EPOCH) // timedelta(seconds=1)


# The year every file of the spread order covers.
YEAR = TimeSpan(datetime(2018, 1, 1), datetime(2019, 1, 1))


@dataclass(frozen=True)
class Hotspot:
    """A dense area of a region: a centre, a spread and a share of the region's trips."""

    lon: float
    lat: float
    spread_km: float
    weight: float


@dataclass(frozen=True)
class Region:
    """A city: its name, bounding box, share of all trips and hotspots."""

    name: str
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float
    weight: float
    hotspots: tuple[Hotspot, ...]


REGIONS: tuple[Region, ...] = (
    Region(
        "Prague",
        14.22,
        49.94,
        14.71,
        50.18,
        0.26,
        (
            Hotspot(14.4205, 50.0875, 1.2, 0.45),  # Old Town
            Hotspot(14.4350, 50.0755, 1.0, 0.25),  # Vinohrady
            Hotspot(14.4400, 50.1000, 1.5, 0.15),  # Holesovice
            Hotspot(14.2630, 50.1008, 0.8, 0.15),  # airport
        ),
    ),
    Region(
        "Turin",
        7.58,
        45.00,
        7.77,
        45.14,
        0.20,
        (
            Hotspot(7.6860, 45.0705, 0.9, 0.5),  # centre
            Hotspot(7.6650, 45.0620, 0.7, 0.3),  # Porta Nuova
            Hotspot(7.6650, 45.0300, 1.2, 0.2),  # Lingotto
        ),
    ),
    Region(
        "Hamburg",
        9.73,
        53.39,
        10.33,
        53.74,
        0.18,
        (
            Hotspot(9.9937, 53.5511, 1.3, 0.45),  # Altstadt
            Hotspot(9.9580, 53.5500, 1.0, 0.25),  # St. Pauli
            Hotspot(9.9370, 53.5520, 0.9, 0.15),  # Altona
            Hotspot(9.9880, 53.6300, 0.8, 0.15),  # airport
        ),
    ),
    Region(
        "Barcelona",
        2.05,
        41.32,
        2.23,
        41.47,
        0.16,
        (
            Hotspot(2.1734, 41.3851, 0.8, 0.45),  # Ciutat Vella
            Hotspot(2.1620, 41.3950, 1.0, 0.35),  # Eixample
            Hotspot(2.1900, 41.4030, 0.9, 0.20),  # Poblenou
        ),
    ),
    Region(
        "Lisbon",
        -9.23,
        38.69,
        -9.09,
        38.80,
        0.12,
        (
            Hotspot(-9.1393, 38.7100, 0.7, 0.5),  # Baixa
            Hotspot(-9.1450, 38.7370, 0.9, 0.3),  # Avenidas Novas
            Hotspot(-9.1300, 38.7750, 0.6, 0.2),  # airport
        ),
    ),
    Region(
        "Melbourne",
        144.85,
        -37.90,
        145.10,
        -37.70,
        0.08,
        (
            Hotspot(144.9631, -37.8136, 1.0, 0.6),  # CBD
            Hotspot(144.9800, -37.8550, 1.2, 0.4),  # St Kilda Road
        ),
    ),
)

DATASOURCES: tuple[tuple[str, float], ...] = (
    ("cheap_mobile", 0.33),
    ("pt_search_app", 0.20),
    ("bad_diesel_vehicles", 0.18),
    ("baba_car", 0.16),
    ("funny_car", 0.13),
)

# Trips by hour of day: weekday rush hours at 8 and 17-18, weekends late and flat.
# fmt: off
WEEKDAY_HOURS = (
    0.8, 0.4, 0.3, 0.3, 0.5, 1.2, 3.0, 6.5, 8.0, 5.5, 4.0, 4.0,
    4.5, 4.5, 4.2, 4.8, 6.0, 7.5, 7.2, 5.5, 4.0, 3.0, 2.2, 1.5,
)
WEEKEND_HOURS = (
    1.8, 1.4, 1.0, 0.7, 0.5, 0.6, 0.9, 1.5, 2.4, 3.3, 4.0, 4.4,
    4.6, 4.6, 4.5, 4.4, 4.4, 4.3, 4.1, 3.8, 3.3, 2.8, 2.4, 2.1,
)
# fmt: on
# Monday to Sunday; every weekday sees more trips than either weekend day.
DAY_WEIGHTS = (1.0, 1.02, 1.04, 1.06, 1.1, 0.55, 0.45)


@dataclass(frozen=True)
class Trips:
    """Valid trips as columns: region and datasource as indexes, times as epoch seconds."""

    region: IntArray
    origin_lon: FloatArray
    origin_lat: FloatArray
    destination_lon: FloatArray
    destination_lat: FloatArray
    seconds: IntArray
    datasource: IntArray

    def take(self, rows: IntArray) -> Trips:
        """Return the trips at the given positions."""
        return Trips(
            self.region[rows],
            self.origin_lon[rows],
            self.origin_lat[rows],
            self.destination_lon[rows],
            self.destination_lat[rows],
            self.seconds[rows],
            self.datasource[rows],
        )


@dataclass
class Chunk:
    """One chunk of formatted lines (each ending in a newline) and what was put into it."""

    lines: pa.Array
    invalid: dict[Reason, int]
    duplicates: int


@dataclass(frozen=True)
class GeneratedFile:
    """One written file: its path, data rows (header excluded) and size."""

    path: Path
    rows: int
    bytes: int
    span: TimeSpan = YEAR


@dataclass(frozen=True)
class GenerationSummary:
    """What `generate_trips` wrote, with the counts the pipeline should find in it."""

    rows: int
    files: tuple[GeneratedFile, ...]
    seconds: float
    seed: int
    invalid: dict[Reason, int] = field(default_factory=dict)
    duplicates: int = 0
    order: Order = Order.SPREAD

    @property
    def span(self) -> TimeSpan:
        """The time every file together covers."""
        if not self.files:
            return YEAR
        return TimeSpan(self.files[0].span.start, self.files[-1].span.end)

    @property
    def bytes(self) -> int:
        """Total size of the files, headers included."""
        return sum(item.bytes for item in self.files)

    @property
    def invalid_rows(self) -> int:
        """Rows that break a contract rule."""
        return sum(self.invalid.values())

    @property
    def distinct_trips(self) -> int:
        """Valid rows once exact repeats are removed."""
        return self.rows - self.invalid_rows - self.duplicates

    @property
    def rows_per_second(self) -> float:
        """Generation speed in rows."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def megabytes_per_second(self) -> float:
        """Generation speed in MB (10^6 bytes)."""
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        """Return the one-line summary."""
        return (
            f"{self.rows} rows, {len(self.files)} files, {self.bytes} bytes in "
            f"{self.seconds:.2f} s ({self.rows_per_second:,.0f} rows/s, "
            f"{self.megabytes_per_second:.1f} MB/s); invalid {self.invalid_rows}, "
            f"duplicates {self.duplicates}; {self.describe_order()}"
        )

    def describe_order(self) -> str:
        """Say how the trip times are laid out over the files."""
        span = self.span.to_dict()
        if self.order is Order.SPREAD:
            return f"spread: every file over {span['start']} .. {span['end']}"
        per_file = self.files[0].span.days if self.files else 0.0
        return f"time-ordered: {span['start']} .. {span['end']}, {per_file:g} days per file"

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-ready values."""
        return {
            "rows": self.rows,
            "order": self.order.value,
            "span": self.span.to_dict(),
            "files": [
                {
                    "path": str(item.path),
                    "rows": item.rows,
                    "bytes": item.bytes,
                    "span": item.span.to_dict(),
                }
                for item in self.files
            ],
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "megabytes_per_second": round(self.megabytes_per_second, 2),
            "seed": self.seed,
            "invalid": {reason.value: self.invalid.get(reason, 0) for reason in GENERATED_REASONS},
            "invalid_rows": self.invalid_rows,
            "duplicates": self.duplicates,
            "valid_rows": self.rows - self.invalid_rows,
            "distinct_trips": self.distinct_trips,
        }


def _cumulative(weights: Sequence[float]) -> FloatArray:
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    cdf /= cdf[-1]
    # Guard against rounding: searchsorted on u < 1 must never run past the last bucket.
    cdf[-1] = 1.0
    return cdf


def _pick(rng: np.random.Generator, cdf: FloatArray, count: int) -> IntArray:
    return np.searchsorted(cdf, rng.random(count), side="right").astype(np.int64)


def rhythm(hours: IntArray) -> FloatArray:
    """Return the relative number of trips in each hour (counted from the epoch): daily and
    weekly rhythms, a mild season."""
    day = hours // 24
    weekday = (day + 3) % 7  # Monday is 0; 1970-01-01 was a Thursday
    weekend = weekday >= 5
    profile = np.where(
        weekend, np.asarray(WEEKEND_HOURS)[hours % 24], np.asarray(WEEKDAY_HOURS)[hours % 24]
    )
    dates = day.astype("datetime64[D]")
    day_of_year = (dates - dates.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64)
    # More trips in late spring and summer than in winter.
    season = 1.0 + 0.15 * np.sin(2 * np.pi * (day_of_year - 80) / 365)
    return np.asarray(profile * np.asarray(DAY_WEIGHTS)[weekday] * season, dtype=np.float64)


@cache
def hour_weights() -> FloatArray:
    """Return the relative number of trips in each hour of 2018, daily and weekly rhythms."""
    return rhythm(YEAR_START // 3600 + np.arange(HOURS_IN_YEAR))


@cache
def _hour_cdf() -> FloatArray:
    return _cumulative(list(hour_weights()))


@dataclass(frozen=True)
class _SpanHours:
    """The hours a span touches: where each starts inside the span, its seconds inside the
    span and the cumulative share of trips up to it."""

    start: IntArray
    width: IntArray
    cdf: FloatArray


@cache
def _span_hours(start: int, end: int) -> _SpanHours:
    hours = np.arange(start // 3600, (end - 1) // 3600 + 1, dtype=np.int64)
    low = np.maximum(hours * 3600, start)
    width = np.minimum((hours + 1) * 3600, end) - low
    # An hour the span cuts gets the share of its trips that fall inside the span.
    return _SpanHours(low, width, _cumulative(list(rhythm(hours) * width)))


def sample_seconds(rng: np.random.Generator, count: int, span: tuple[int, int]) -> IntArray:
    """Draw `count` epoch seconds in [start, end) with the hourly, weekly and seasonal rhythm."""
    hours = _span_hours(*span)
    hour = _pick(rng, hours.cdf, count)
    # random() < 1, so the offset stays below the hour's width inside the span.
    offset = (rng.random(count) * hours.width[hour]).astype(np.int64)
    return hours.start[hour] + offset


def sample_trips(
    rng: np.random.Generator, count: int, span: tuple[int, int] | None = None
) -> Trips:
    """Draw `count` valid trips: hotspot-heavy origins, mostly short hops, rush-hour times,
    in 2018 or in `span` (epoch seconds, end excluded)."""
    region = _pick(rng, _cumulative([item.weight for item in REGIONS]), count)
    origin_lon = np.empty(count)
    origin_lat = np.empty(count)
    destination_lon = np.empty(count)
    destination_lat = np.empty(count)
    for index, item in enumerate(REGIONS):
        rows = np.flatnonzero(region == index)
        olon, olat, dlon, dlat = _sample_region(rng, item, rows.size)
        origin_lon[rows] = olon
        origin_lat[rows] = olat
        destination_lon[rows] = dlon
        destination_lat[rows] = dlat
    if span is None:
        # The spread order's draws, kept as they were so its files stay byte-identical.
        hour = _pick(rng, _hour_cdf(), count)
        seconds = YEAR_START + hour * 3600 + rng.integers(0, 3600, count)
    else:
        seconds = sample_seconds(rng, count, span)
    datasource = _pick(rng, _cumulative([weight for _, weight in DATASOURCES]), count)
    return Trips(
        region, origin_lon, origin_lat, destination_lon, destination_lat, seconds, datasource
    )


def _sample_region(
    rng: np.random.Generator, region: Region, count: int
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    spots = region.hotspots
    spot_cdf = _cumulative([spot.weight for spot in spots])
    spot_lon = np.asarray([spot.lon for spot in spots])
    spot_lat = np.asarray([spot.lat for spot in spots])
    spot_km = np.asarray([spot.spread_km for spot in spots])
    # Degrees of longitude shrink with latitude; one factor per region is close enough.
    km_per_lon = KM_PER_DEGREE * math.cos(math.radians((region.min_lat + region.max_lat) / 2))

    def around_hotspots() -> tuple[FloatArray, FloatArray]:
        spot = _pick(rng, spot_cdf, count)
        lon = spot_lon[spot] + rng.normal(0.0, 1.0, count) * spot_km[spot] / km_per_lon
        lat = spot_lat[spot] + rng.normal(0.0, 1.0, count) * spot_km[spot] / KM_PER_DEGREE
        return lon, lat

    hot_lon, hot_lat = around_hotspots()
    anywhere = rng.random(count) < 0.25
    origin_lon = np.where(anywhere, rng.uniform(region.min_lon, region.max_lon, count), hot_lon)
    origin_lat = np.where(anywhere, rng.uniform(region.min_lat, region.max_lat, count), hot_lat)
    # Most trips are short hops (median about 2.5 km); some head for another hotspot.
    distance_km = rng.lognormal(math.log(2.5), 0.7, count)
    bearing = rng.uniform(0.0, 2 * math.pi, count)
    hop_lon = origin_lon + distance_km * np.sin(bearing) / km_per_lon
    hop_lat = origin_lat + distance_km * np.cos(bearing) / KM_PER_DEGREE
    far_lon, far_lat = around_hotspots()
    far = rng.random(count) < 0.2
    destination_lon = np.where(far, far_lon, hop_lon)
    destination_lat = np.where(far, far_lat, hop_lat)
    return (
        _fold(origin_lon, region.min_lon, region.max_lon),
        _fold(origin_lat, region.min_lat, region.max_lat),
        _fold(destination_lon, region.min_lon, region.max_lon),
        _fold(destination_lat, region.min_lat, region.max_lat),
    )


def _fold(values: FloatArray, low: float, high: float) -> FloatArray:
    # Mirror strays back into the box rather than clipping, which would pile points on its edge.
    values = np.where(values > high, 2 * high - values, values)
    values = np.where(values < low, 2 * low - values, values)
    return np.clip(values, low, high)


def _number_parts(values: FloatArray, decimals: int = DECIMALS) -> list[Any]:
    """Return the pieces (sign, whole, '.', fraction) that join into fixed-point text."""
    # Integer casts and padding are several times faster than pyarrow's float-to-string cast.
    magnitude = np.abs(values)
    scale = 10**decimals
    scaled = np.rint(magnitude * scale).astype(np.int64)
    whole, fraction = np.divmod(scaled, scale)
    sign = pa.array(["", "-"]).take(pa.array(((values < 0) & (scaled > 0)).view(np.int8)))
    parts: list[Any] = [sign, pc.cast(pa.array(whole), pa.string())]
    if decimals:
        parts += [".", pc.ascii_lpad(pc.cast(pa.array(fraction), pa.string()), decimals, "0")]
    return parts


def format_number(values: FloatArray, decimals: int = DECIMALS) -> pa.Array:
    """Format numbers as fixed-point text with `decimals` digits after the point."""
    return pc.binary_join_element_wise(*_number_parts(values, decimals), "")


def format_point(lon: FloatArray, lat: FloatArray, decimals: int = DECIMALS) -> pa.Array:
    """Format WKT points `POINT (lon lat)`."""
    return pc.binary_join_element_wise(
        "POINT (", *_number_parts(lon, decimals), " ", *_number_parts(lat, decimals), ")", ""
    )


def format_datetime(seconds: IntArray) -> pa.Array:
    """Format epoch seconds as `YYYY-MM-DD HH:MM:SS` wall-clock text."""
    return pc.cast(pa.array(seconds.astype("datetime64[s]")), pa.string())


def _names(names: Sequence[str], indexes: IntArray) -> pa.Array:
    return pa.array(list(names)).take(pa.array(indexes))


def region_names(trips: Trips) -> pa.Array:
    """Return each trip's region name."""
    return _names([item.name for item in REGIONS], trips.region)


def datasource_names(trips: Trips) -> pa.Array:
    """Return each trip's datasource name."""
    return _names([name for name, _ in DATASOURCES], trips.datasource)


def format_lines(trips: Trips) -> pa.Array:
    """Format valid trips as CSV lines in the contract's column order, each ending in a newline."""
    # One join over every piece: no intermediate per-field arrays to allocate and copy.
    return pc.binary_join_element_wise(
        region_names(trips),
        ",POINT (",
        *_number_parts(trips.origin_lon),
        " ",
        *_number_parts(trips.origin_lat),
        "),POINT (",
        *_number_parts(trips.destination_lon),
        " ",
        *_number_parts(trips.destination_lat),
        "),",
        format_datetime(trips.seconds),
        ",",
        datasource_names(trips),
        "\n",
        "",
    )


def _choose(rng: np.random.Generator, variants: Sequence[Any], count: int) -> pa.Array:
    """Pick, row by row, one of several same-length arrays (or scalars) at random."""
    which = pa.array(rng.integers(0, len(variants), count))
    columns = [
        item if isinstance(item, pa.Array) else pa.repeat(pa.scalar(item, pa.string()), count)
        for item in variants
    ]
    return pc.choose(which, *columns)


def _broken_point(rng: np.random.Generator, lon: FloatArray, lat: FloatArray) -> pa.Array:
    count = lon.size
    lon_text, lat_text = format_number(lon), format_number(lat)
    return _choose(
        rng,
        [
            pc.binary_join_element_wise("POINT (", lon_text, " ", lat_text, ""),  # no ')'
            pc.binary_join_element_wise(lon_text, " ", lat_text, ""),  # no POINT
            pc.binary_join_element_wise("POINT (", lon_text, ")", ""),  # one number
            pc.binary_join_element_wise("POINT (", lon_text, " N/A)", ""),
            "POINT EMPTY",
            "",
        ],
        count,
    )


def _out_of_range_point(rng: np.random.Generator, lon: FloatArray, lat: FloatArray) -> pa.Array:
    # Real sources of impossible coordinates: web-mercator metres, integer micro-degrees,
    # wrapped longitudes and latitudes pushed past a pole.
    radius = 6_378_137.0
    mercator_x = np.radians(lon) * radius
    mercator_y = np.log(np.tan(np.pi / 4 + np.radians(lat) / 2)) * radius
    return _choose(
        rng,
        [
            format_point(mercator_x, mercator_y, 2),
            format_point(np.rint(lon * 1e6), np.rint(lat * 1e6), 0),
            format_point(lon + 360.0, lat),
            format_point(lon, lat + np.copysign(180.0, lat)),
        ],
        lon.size,
    )


def _bad_datetime(rng: np.random.Generator, seconds: IntArray) -> pa.Array:
    count = seconds.size
    text = format_datetime(seconds)

    def part(start: int, stop: int | None = None) -> pa.Array:
        return pc.utf8_slice_codeunits(text, start, stop)

    impossible_days = ["02-29", "02-30", "02-31", "04-31", "06-31", "09-31", "11-31"]
    day = _choose(rng, impossible_days, count)
    years = seconds.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
    leap = (years % 4 == 0) & ((years % 100 != 0) | (years % 400 == 0))
    if leap.any():
        # February 29th exists in a leap year: make it the 30th there.
        is_29th = pc.and_(pa.array(leap), pc.equal(day, "02-29"))
        day = pc.if_else(is_29th, "02-30", day)
    return _choose(
        rng,
        [
            pc.binary_join_element_wise(part(0, 5), day, part(10), ""),
            pc.binary_join_element_wise(part(0, 5), "13", part(7), ""),  # month 13
            pc.binary_join_element_wise(part(0, 11), "24", part(13), ""),  # hour 24
            pc.binary_join_element_wise(
                part(8, 10), "/", part(5, 7), "/", part(0, 4), part(10), ""
            ),
            part(0, 10),  # date only
            pc.binary_join_element_wise(part(0, 10), "T", part(11), "Z", ""),  # with a zone
            "",
        ],
        count,
    )


def _empty(rng: np.random.Generator, count: int) -> pa.Array:
    return _choose(rng, ["", "  "], count)


def format_invalid_lines(rng: np.random.Generator, trips: Trips, reason: Reason) -> pa.Array:
    """Format trips as CSV lines that each break exactly the rule named by `reason`."""
    count = trips.region.size
    fields: list[Any] = [
        region_names(trips),
        format_point(trips.origin_lon, trips.origin_lat),
        format_point(trips.destination_lon, trips.destination_lat),
        format_datetime(trips.seconds),
        datasource_names(trips),
    ]
    if reason is Reason.WRONG_FIELD_COUNT:
        # A null field is skipped with its separator: four fields instead of five.
        nothing = pa.nulls(count, pa.string())
        source = fields[4]
        fields[4] = _choose(
            rng,
            [
                nothing,
                pc.binary_join_element_wise(source, ",", ""),  # trailing comma
                pc.binary_join_element_wise(source, ",1", ""),  # an extra column
                pc.binary_join_element_wise(fields[3], ",", source, ""),  # datetime repeated
            ],
            count,
        )
        drop_region = rng.random(count) < 0.25
        fields[0] = pc.if_else(pa.array(drop_region), nothing, fields[0])
        # Dropping both would leave three fields: still the same reason, but keep it to one.
        fields[4] = pc.if_else(pa.array(drop_region), source, fields[4])
    elif reason is Reason.EMPTY_REGION:
        fields[0] = _empty(rng, count)
    elif reason is Reason.BAD_ORIGIN_COORD:
        fields[1] = _broken_point(rng, trips.origin_lon, trips.origin_lat)
    elif reason is Reason.ORIGIN_OUT_OF_RANGE:
        fields[1] = _out_of_range_point(rng, trips.origin_lon, trips.origin_lat)
    elif reason is Reason.BAD_DESTINATION_COORD:
        fields[2] = _broken_point(rng, trips.destination_lon, trips.destination_lat)
    elif reason is Reason.DESTINATION_OUT_OF_RANGE:
        fields[2] = _out_of_range_point(rng, trips.destination_lon, trips.destination_lat)
    elif reason is Reason.BAD_DATETIME:
        fields[3] = _bad_datetime(rng, trips.seconds)
    elif reason is Reason.EMPTY_DATASOURCE:
        fields[4] = _empty(rng, count)
    joined = pc.binary_join_element_wise(*fields, ",", null_handling="skip")
    return pc.binary_join_element_wise(joined, "\n", "")


def build_chunk(
    rng: np.random.Generator,
    count: int,
    invalid_rate: float,
    duplicate_rate: float,
    pool: pa.Array,
    span: tuple[int, int] | None = None,
) -> tuple[Chunk, pa.Array]:
    """Build one chunk of lines (trip times in `span`, else in 2018); return it and the pool
    of valid lines for later duplicates."""
    trips = sample_trips(rng, count, span)
    lines = format_lines(trips)
    draw = rng.random(count)
    invalid = draw < invalid_rate
    duplicate = ~invalid & (draw < invalid_rate + duplicate_rate)
    original = ~invalid & ~duplicate
    if len(pool) == 0 and duplicate.any():
        # Nothing earlier to repeat: the duplicates before the first original row become
        # originals themselves (only ever at the very start of the first file).
        first_original = int(np.argmax(original)) if original.any() else count
        early = duplicate & (np.arange(count) < first_original)
        promoted = np.flatnonzero(early)[:1]
        duplicate[promoted] = False
        original[promoted] = True

    counts: dict[Reason, int] = {}
    reasons = list(GENERATED_REASONS)
    invalid_rows = np.flatnonzero(invalid)
    if invalid_rows.size:
        reason_of = rng.integers(0, len(reasons), invalid_rows.size)
        positions: list[IntArray] = []
        pieces: list[pa.Array] = []
        for index, reason in enumerate(reasons):
            rows = invalid_rows[reason_of == index]
            counts[reason] = int(rows.size)
            if rows.size:
                positions.append(rows)
                pieces.append(format_invalid_lines(rng, trips.take(rows), reason))
        order = np.argsort(np.concatenate(positions), kind="stable")
        replacement = pa.concat_arrays(pieces).take(pa.array(order))
        lines = pc.replace_with_mask(lines, pa.array(invalid), replacement)

    duplicate_rows = np.flatnonzero(duplicate)
    original_rows = np.flatnonzero(original)
    if duplicate_rows.size:
        # Each duplicate repeats a uniformly chosen original from the pool or from earlier
        # in this chunk, so copies land in the same file as their source or a later one.
        earlier = np.cumsum(original)[duplicate_rows]
        choices = np.floor(rng.random(duplicate_rows.size) * (len(pool) + earlier))
        choice = choices.astype(np.int64)
        from_pool = choice < len(pool)
        source = np.where(
            from_pool,
            choice,
            len(pool) + original_rows[np.maximum(choice - len(pool), 0)],
        )
        copies = pa.chunked_array([pool, lines], pa.string()).take(pa.array(source))
        lines = pc.replace_with_mask(lines, pa.array(duplicate), copies.combine_chunks())

    keep = min(POOL_ROWS // 2, original_rows.size)
    fresh = lines.take(pa.array(np.sort(rng.choice(original_rows, keep, replace=False))))
    kept = min(POOL_ROWS - keep, len(pool))
    old = pool.take(pa.array(np.sort(rng.choice(len(pool), kept, replace=False))))
    new_pool = pa.concat_arrays([old, fresh])
    return Chunk(lines, counts, int(duplicate_rows.size)), new_pool


def _write_lines(handle: Any, lines: pa.Array) -> int:
    """Write a string array's text straight from its Arrow buffer; return the bytes written."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    start = int(offsets[lines.offset])
    stop = int(offsets[lines.offset + len(lines)])
    handle.write(memoryview(lines.buffers()[2])[start:stop])
    return stop - start


def split_rows(rows: int, files: int) -> list[int]:
    """Share `rows` over `files` as evenly as possible, earlier files taking the remainder."""
    return [rows // files + (1 if index < rows % files else 0) for index in range(files)]


def file_spans(
    files: int, start: datetime = YEAR.start, days_per_file: float | None = None
) -> tuple[TimeSpan, ...]:
    """Return the spans of `files` time-ordered files: the first from `start`, each next one
    where the previous ends, `days_per_file` long (by default the files share 365 days)."""
    if files < 1:
        raise ValueError(f"files must be at least 1, got {files}")
    days = 365 / files if days_per_file is None else days_per_file
    if not math.isfinite(days) or days * DAY_SECONDS < 1:
        raise ValueError(f"days per file must be at least one second, got {days_per_file}")
    first = epoch_seconds(start)
    # Every bound computed from the start, not from the previous bound: no rounding drift,
    # and each span ends exactly where the next begins.
    bounds = [first + round(number * days * DAY_SECONDS) for number in range(files + 1)]
    try:
        moments = [EPOCH + timedelta(seconds=bound) for bound in bounds]
    except OverflowError as error:
        raise ValueError(f"{files} files of {days:g} days from {start} end after 9999") from error
    return tuple(TimeSpan(begin, end) for begin, end in itertools.pairwise(moments))


def generate_trips(
    rows: int,
    out_dir: Path | str,
    files: int = 1,
    seed: int = 0,
    invalid_rate: float = 0.0,
    duplicate_rate: float = 0.0,
    chunk_rows: int = CHUNK_ROWS,
    on_file: Callable[[GeneratedFile], None] | None = None,
    order: Order = Order.SPREAD,
    start: datetime | None = None,
    days_per_file: float | None = None,
) -> GenerationSummary:
    """Write `rows` trips as `files` CSV files in `out_dir`; return what was written.

    `order=Order.TIME` gives file k the span of days after file k-1's (`file_spans`), from
    `start` (default 2018-01-01), `days_per_file` long (default: the files share 365 days).
    """
    order = Order(order)
    if order is Order.SPREAD and (start is not None or days_per_file is not None):
        raise ValueError("start and days per file apply to the time order only")
    if rows < 0:
        raise ValueError(f"rows must not be negative, got {rows}")
    if files < 1:
        raise ValueError(f"files must be at least 1, got {files}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if not 0.0 <= invalid_rate <= 1.0 or not 0.0 <= duplicate_rate <= 1.0:
        raise ValueError("invalid_rate and duplicate_rate must be between 0 and 1")
    if invalid_rate + duplicate_rate > 1.0:
        raise ValueError("invalid_rate + duplicate_rate must not exceed 1")
    if order is Order.TIME:
        spans: Sequence[TimeSpan] = file_spans(files, start or YEAR.start, days_per_file)
    else:
        spans = [YEAR] * files
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pool = pa.array([], pa.string())
    invalid = dict.fromkeys(GENERATED_REASONS, 0)
    duplicates = 0
    written: list[GeneratedFile] = []
    header = (",".join(COLUMNS) + "\n").encode()
    started = time.perf_counter()
    for number, (file_rows, span) in enumerate(
        zip(split_rows(rows, files), spans, strict=True), start=1
    ):
        path = directory / FILE_PATTERN.format(number)
        bounds = span.seconds() if order is Order.TIME else None
        if order is Order.TIME:
            # Repeats only of this file's rows: a row of an earlier file would carry a time
            # outside this file's span.
            pool = pa.array([], pa.string())
        # A hidden .tmp name until complete: the landing sensor ignores both, so a reader
        # watching this directory never picks up a half-written file.
        partial = directory / f".{path.name}.tmp"
        size = 0
        try:
            with partial.open("wb") as handle:
                handle.write(header)
                size += len(header)
                remaining = file_rows
                while remaining:
                    count = min(chunk_rows, remaining)
                    chunk, pool = build_chunk(
                        rng, count, invalid_rate, duplicate_rate, pool, bounds
                    )
                    size += _write_lines(handle, chunk.lines)
                    for reason, found in chunk.invalid.items():
                        invalid[reason] += found
                    duplicates += chunk.duplicates
                    remaining -= count
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, path)
        item = GeneratedFile(path, file_rows, size, span)
        written.append(item)
        if on_file is not None:
            on_file(item)
    return GenerationSummary(
        rows=rows,
        files=tuple(written),
        seconds=time.perf_counter() - started,
        seed=seed,
        invalid=invalid,
        duplicates=duplicates,
        order=order,
    )
