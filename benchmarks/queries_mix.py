"""The weekly-average questions every query benchmark asks: one named, deterministic mix.

The mix covers the shapes the API must answer fast and right: small boxes (about 1 km) in a
hotspot and in a quiet corner, city-sized boxes around hotspots and one as large as a whole
city, a box exactly equal to a region's bounding box (its edge points are inside), a box
around every region, one half outside a region, an empty and a degenerate box, every match
mode, region and datasource filters with and without a box, no filter at all, and date
ranges (a month, a range starting mid-week, one ending exactly on a Monday 00:00, open ends).
Coordinates come from `tripflow.generate.REGIONS`, the generator the data sets are built by.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qs, urlencode

from tripflow.api.params import parse_area_query
from tripflow.generate import DATASOURCES, KM_PER_DEGREE, REGIONS, Hotspot, Region
from tripflow.weeks import AreaQuery, BBox, Match

WEEKLY_AVERAGE_PATH = "/weekly-average"


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


MIX: tuple[Question, ...] = tuple(build_mix())
