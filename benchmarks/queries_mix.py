"""The weekly-average questions every query benchmark asks: one named, deterministic mix.

The mix covers the shapes the API must answer fast and right: small boxes (about 1 km) in a
hotspot and in a quiet corner, city-sized boxes around hotspots and one as large as a whole
city, a box exactly equal to a region's bounding box (its edge points are inside), a box
around every region, one half outside a region, an empty and a degenerate box, every match
mode, region and datasource filters with and without a box, no filter at all, and date
ranges (a month, a range starting mid-week, one ending exactly on a Monday 00:00, open ends).
Coordinates come from `tripflow.generate.REGIONS`, the generator the data sets are built by.

Those 38 are tuned to six cities' hotspots, so the mix adds questions with random boxes
(`random_questions`): 0.3-20 km, centred on trips the generator draws, every match mode,
some with a mid-week range or a datasource filter. They are drawn from a fixed seed, so
every run asks the same ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from urllib.parse import parse_qs, urlencode

import numpy as np

from tripflow.api.params import parse_area_query
from tripflow.generate import (
    DATASOURCES,
    KM_PER_DEGREE,
    REGIONS,
    YEAR_START,
    Hotspot,
    Region,
    sample_trips,
)
from tripflow.weeks import AreaQuery, BBox, Match

WEEKLY_AVERAGE_PATH = "/weekly-average"
RANDOM_QUESTIONS = 24
RANDOM_SEED = 20180101
RANDOM_SIDE_KM = (0.3, 20.0)
_DAY_SECONDS = 24 * 3600
_WEEK_SECONDS = 7 * _DAY_SECONDS


@dataclass(frozen=True)
class Question:
    """One named weekly-average question of the mix."""

    name: str
    query: AreaQuery


def region_named(name: str) -> Region:
    """Return the generator's region of that name."""
    for region in REGIONS:
        if region.name == name:
            return region
    raise KeyError(name)


def region_box(region: Region) -> BBox:
    """Return a region's bounding box exactly as the generator draws points inside it."""
    return BBox(region.min_lon, region.min_lat, region.max_lon, region.max_lat)


def box_around(lon: float, lat: float, side_km: float) -> BBox:
    """Return a square box of about `side_km` a side centred on a point."""
    half_lat = side_km / 2 / KM_PER_DEGREE
    half_lon = side_km / 2 / (KM_PER_DEGREE * math.cos(math.radians(lat)))
    # Rounded so that the API's query string carries exactly the same floats.
    return BBox(
        round(lon - half_lon, 6),
        round(lat - half_lat, 6),
        round(lon + half_lon, 6),
        round(lat + half_lat, 6),
    )


def box_around_hotspot(hotspot: Hotspot, side_km: float) -> BBox:
    """Return a square box of about `side_km` a side centred on a hotspot."""
    return box_around(hotspot.lon, hotspot.lat, side_km)


def _all_regions_box() -> BBox:
    return BBox(
        min(region.min_lon for region in REGIONS),
        min(region.min_lat for region in REGIONS),
        max(region.max_lon for region in REGIONS),
        max(region.max_lat for region in REGIONS),
    )


def build_mix() -> list[Question]:
    """Return the mix's questions, always the same ones in the same order."""
    prague = region_named("Prague")
    turin = region_named("Turin")
    hamburg = region_named("Hamburg")
    barcelona = region_named("Barcelona")
    lisbon = region_named("Lisbon")
    melbourne = region_named("Melbourne")
    old_town = prague.hotspots[0]
    turin_centre = turin.hotspots[0]
    eixample = barcelona.hotspots[1]
    st_pauli = hamburg.hotspots[1]
    datasource = DATASOURCES[0][0]
    rare_datasource = DATASOURCES[-1][0]

    small_hot = box_around_hotspot(old_town, 1.0)
    # Far from every Prague hotspot: only the quarter of trips drawn anywhere in the region.
    small_quiet = box_around(14.66, 49.97, 1.0)
    city_prague = box_around_hotspot(old_town, 8.0)
    city_turin = box_around_hotspot(turin_centre, 6.0)
    city_barcelona = box_around_hotspot(eixample, 10.0)
    # The whole city of Prague, a little inside the generator's box.
    whole_city = BBox(14.25, 49.96, 14.69, 50.16)
    # Straddles Turin's western edge (7.58): the western half holds no trip at all.
    half_outside = BBox(7.52, 45.03, 7.64, 45.09)
    # Mid-Atlantic: no region comes near it.
    empty = BBox(-31.0, 30.0, -29.0, 31.0)
    # min_lat = max_lat: a line through the Old Town, allowed by the API.
    degenerate = BBox(14.40, old_town.lat, 14.44, old_town.lat)

    may = (datetime(2018, 5, 1), datetime(2018, 6, 1))
    # Wednesday noon to a Sunday: the span still starts and ends on whole ISO weeks.
    mid_week = (datetime(2018, 3, 7, 12, 0, 0), datetime(2018, 4, 15))
    # Ends exactly on Monday 2018-02-05 00:00: the week of 2018-02-05 is not in the span.
    to_monday = (datetime(2018, 1, 1), datetime(2018, 2, 5))

    questions = [
        Question("small-hotspot-both", AreaQuery(bbox=small_hot)),
        Question("small-hotspot-origin", AreaQuery(bbox=small_hot, match=Match.ORIGIN)),
        Question("small-hotspot-destination", AreaQuery(bbox=small_hot, match=Match.DESTINATION)),
        Question("small-hotspot-either", AreaQuery(bbox=small_hot, match=Match.EITHER)),
        Question("small-quiet-both", AreaQuery(bbox=small_quiet)),
        Question("small-quiet-origin", AreaQuery(bbox=small_quiet, match=Match.ORIGIN)),
        Question("small-quiet-destination", AreaQuery(bbox=small_quiet, match=Match.DESTINATION)),
        Question("small-quiet-either", AreaQuery(bbox=small_quiet, match=Match.EITHER)),
        Question("city-prague-8km-both", AreaQuery(bbox=city_prague)),
        Question("city-prague-8km-origin", AreaQuery(bbox=city_prague, match=Match.ORIGIN)),
        Question(
            "city-prague-8km-destination", AreaQuery(bbox=city_prague, match=Match.DESTINATION)
        ),
        Question("city-prague-8km-either", AreaQuery(bbox=city_prague, match=Match.EITHER)),
        Question("city-turin-6km-both", AreaQuery(bbox=city_turin)),
        Question("city-barcelona-10km-either", AreaQuery(bbox=city_barcelona, match=Match.EITHER)),
        Question("city-hamburg-1km-st-pauli", AreaQuery(bbox=box_around_hotspot(st_pauli, 1.0))),
        Question("whole-city-prague", AreaQuery(bbox=whole_city)),
        Question("region-box-hamburg", AreaQuery(bbox=region_box(hamburg))),
        Question(
            "region-box-lisbon-either", AreaQuery(bbox=region_box(lisbon), match=Match.EITHER)
        ),
        Question(
            "region-box-melbourne-origin", AreaQuery(bbox=region_box(melbourne), match=Match.ORIGIN)
        ),
        Question("all-regions-box", AreaQuery(bbox=_all_regions_box())),
        Question("half-outside-turin", AreaQuery(bbox=half_outside)),
        Question("half-outside-turin-either", AreaQuery(bbox=half_outside, match=Match.EITHER)),
        Question("empty-box", AreaQuery(bbox=empty)),
        Question("degenerate-box", AreaQuery(bbox=degenerate, match=Match.EITHER)),
        Question("region-only", AreaQuery(region=prague.name)),
        Question("region-datasource", AreaQuery(region=turin.name, datasource=rare_datasource)),
        Question("datasource-only", AreaQuery(datasource=datasource)),
        Question("no-filter", AreaQuery()),
        Question("box-and-region", AreaQuery(bbox=city_prague, region=prague.name)),
        Question("box-region-other-city", AreaQuery(bbox=city_prague, region=turin.name)),
        Question("month-city-box", AreaQuery(bbox=city_prague, start=may[0], end=may[1])),
        Question("month-no-box", AreaQuery(start=may[0], end=may[1])),
        Question(
            "mid-week-small-box-either",
            AreaQuery(
                bbox=small_hot,
                start=mid_week[0],
                end=mid_week[1],
                match=Match.EITHER,
            ),
        ),
        Question(
            "to-monday-region", AreaQuery(region=lisbon.name, start=to_monday[0], end=to_monday[1])
        ),
        Question(
            "from-only-datasource",
            AreaQuery(datasource=datasource, start=datetime(2018, 11, 14, 8)),
        ),
        Question("to-only-city-box", AreaQuery(bbox=city_turin, end=datetime(2018, 2, 12))),
        Question(
            "range-without-trips",
            AreaQuery(
                bbox=city_barcelona,
                start=datetime(2019, 3, 1),
                end=datetime(2019, 4, 1),
            ),
        ),
        Question(
            "everything-set",
            AreaQuery(
                bbox=city_barcelona,
                region=barcelona.name,
                datasource=datasource,
                start=datetime(2018, 6, 4),
                end=datetime(2018, 9, 3),
                match=Match.ORIGIN,
            ),
        ),
    ]
    names = [item.name for item in questions]
    assert len(set(names)) == len(names), "question names must be unique"
    return questions


def random_questions(count: int = RANDOM_QUESTIONS, seed: int = RANDOM_SEED) -> list[Question]:
    """Return `count` questions with random boxes around generated trips, the same for a seed."""
    rng = np.random.default_rng(seed)
    # Centres where the data sets have trips: drawn the way `tripflow generate` draws them.
    trips = sample_trips(rng, count)
    matches = list(Match)
    low, high = (math.log(side) for side in RANDOM_SIDE_KM)
    # The generator's year, as the naive timestamps tripdata stores.
    year_start = datetime(1970, 1, 1) + timedelta(seconds=YEAR_START)
    questions = []
    for index in range(count):
        on_origin = bool(rng.random() < 0.5)
        lon = trips.origin_lon[index] if on_origin else trips.destination_lon[index]
        lat = trips.origin_lat[index] if on_origin else trips.destination_lat[index]
        side_km = math.exp(rng.uniform(low, high))
        # Cycled, not drawn, so that every match mode meets ranges and datasources.
        match = matches[index % len(matches)]
        start = end = None
        if index % 3 == 1:
            # Ranges stay inside 2018 and start and end inside a week, never on its edge.
            start = year_start + timedelta(
                seconds=int(rng.integers(0, 365 * _DAY_SECONDS - 8 * _WEEK_SECONDS))
            )
            end = start + timedelta(seconds=int(rng.integers(_WEEK_SECONDS, 8 * _WEEK_SECONDS)))
            start, end = _off_midnight(start), _off_midnight(end)
        datasource = None
        if index % 5 == 2:
            datasource = DATASOURCES[int(rng.integers(0, len(DATASOURCES)))][0]
        name = f"random-{index:02d}-{side_km:.1f}km-{match}"
        name += "-range" if start is not None else ""
        name += "-datasource" if datasource is not None else ""
        box = box_around(float(lon), float(lat), side_km)
        query = AreaQuery(bbox=box, datasource=datasource, start=start, end=end, match=match)
        questions.append(Question(name, query))
    return questions


def _off_midnight(moment: datetime) -> datetime:
    # A range starting or ending at 00:00 would fall on whole days; a week's edge is one.
    return moment + timedelta(hours=1) if moment.time() == time(0) else moment


def _number(value: float) -> str:
    # repr gives the shortest text that reads back as the same float.
    return repr(float(value))


def _moment(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def query_string(query: AreaQuery) -> str:
    """Return the API query string that asks `query` (without the leading `?`)."""
    parameters: list[tuple[str, str]] = []
    if query.bbox is not None:
        parameters.append(("bbox", ",".join(_number(value) for value in query.bbox.as_list())))
    if query.region is not None:
        parameters.append(("region", query.region))
    if query.datasource is not None:
        parameters.append(("datasource", query.datasource))
    if query.start is not None:
        parameters.append(("from", _moment(query.start)))
    if query.end is not None:
        parameters.append(("to", _moment(query.end)))
    if query.match is not Match.BOTH:
        parameters.append(("match", str(query.match)))
    return urlencode(parameters, safe=",:")


def request_path(query: AreaQuery) -> str:
    """Return the path and query string of the API request that asks `query`."""
    text = query_string(query)
    return f"{WEEKLY_AVERAGE_PATH}?{text}" if text else WEEKLY_AVERAGE_PATH


def check_query_strings(questions: Sequence[Question]) -> None:
    """Raise AssertionError unless the API parses each query string back into its question."""
    for item in questions:
        parsed = parse_area_query(parse_qs(query_string(item.query), keep_blank_values=True))
        assert parsed == item.query, f"{item.name}: the API would read {parsed}, not {item.query}"


FIXED: tuple[Question, ...] = tuple(build_mix())
RANDOM: tuple[Question, ...] = tuple(random_questions())
MIX: tuple[Question, ...] = FIXED + RANDOM
