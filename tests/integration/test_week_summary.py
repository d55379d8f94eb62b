"""The weekly summary and the ways a weekly average is counted from it, against brute force.

Generated trips plus hand-placed ones on box edges and corners go through tripflow's
publish (twice, the second batch repeating part of the first). Then every question of a
mix (boxes inside, across and around regions, equal to a group's extent, empty, degenerate,
every match, ranges starting mid-week) is answered three times: with the planner's own
choices, with every partly covered group counted by scanning, and with every one counted
by its complement. Each answer must equal tests/reference.py on the same trips.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests import reference
from tests.integration.trips import sample, stage_and_publish
from tripflow import answers, generate
from tripflow.api import create_app
from tripflow.api.database import EXTENSION_KEY
from tripflow.records import Trip
from tripflow.serving import maintenance
from tripflow.serving.copy import ServingCopy
from tripflow.serving.engine import Engine
from tripflow.warehouse import plan, queries
from tripflow.warehouse.database import connect
from tripflow.weeks import AreaQuery, BBox, Match

# A box in Prague's old town, and trips placed exactly on its edges and corners.
OLD_TOWN = BBox(14.40, 50.05, 14.45, 50.10)
EDGE_TRIPS = [
    ((14.40, 50.07), (14.45, 50.10)),  # left edge to top-right corner
    ((14.42, 50.05), (14.43, 50.10)),  # bottom edge to top edge
    ((14.40, 50.05), (14.40, 50.05)),  # bottom-left corner, both ends
    ((14.42, 50.08), (14.4500000001, 50.08)),  # inside to just outside
    ((14.3999999999, 50.08), (14.42, 50.08)),  # just outside to inside
    ((14.42, 50.08), (14.42, 50.08)),  # the point of a degenerate box
]
PRAGUE = generate.REGIONS[0]
TURIN = generate.REGIONS[1]


def edge_trips() -> list[Trip]:
    """The edge trips twice: alone in groups of their own (whose extents are the points
    themselves), and among generated trips of a common datasource, so that groups partly
    inside the box hold points exactly on its edges (what a complement must not subtract)."""
    moment = datetime(2018, 3, 7, 8, 30)
    common = generate.DATASOURCES[0][0]
    return [
        Trip("Prague", olon, olat, dlon, dlat, moment + timedelta(days=9 * number), source)
        for source in ("edge_app", common)
        for number, ((olon, olat), (dlon, dlat)) in enumerate(EDGE_TRIPS)
    ]


@pytest.fixture(scope="module")
def trips_url(postgres_cluster: Any, template_url: str) -> Iterator[tuple[str, list[Trip]]]:
    url = postgres_cluster.create_database("week_summary", template="tripflow_template")
    first = sample(3000, seed=5) + edge_trips()
    second = first[:500] + sample(1000, seed=6)  # 500 repeats, 1000 new
    with closing(connect(url)) as conn:
        stage_and_publish(conn, first)
        stage_and_publish(conn, second)
    unique = list({trip: None for trip in first + second})
    yield url, unique


@pytest.fixture(scope="module")
def serving(
    trips_url: tuple[str, list[Trip]], tmp_path_factory: pytest.TempPathFactory
) -> answers.Serving:
    """The serving copy of the module's trips, written from tripdata."""
    copy = ServingCopy(tmp_path_factory.mktemp("serving"))
    with closing(connect(trips_url[0])) as conn:
        assert maintenance.sync(conn, copy) == [1, 2]
    return answers.Serving(copy, Engine())


def questions() -> list[tuple[str, AreaQuery]]:
    prague_box = BBox(PRAGUE.min_lon, PRAGUE.min_lat, PRAGUE.max_lon, PRAGUE.max_lat)
    inner_city = BBox(14.25, 49.96, 14.69, 50.16)
    across = BBox(14.0, 49.9, 14.45, 50.1)
    around_all = BBox(-180.0, -90.0, 180.0, 90.0)
    between_cities = BBox(10.0, 46.0, 12.0, 48.0)
    degenerate = BBox(14.42, 50.08, 14.42, 50.08)
    line = BBox(14.40, 50.0, 14.40, 50.2)
    boxes = {
        "old_town": OLD_TOWN,
        "prague_extent": prague_box,
        "inner_city": inner_city,
        "across_border": across,
        "around_all": around_all,
        "empty": between_cities,
        "degenerate": degenerate,
        "line": line,
    }
    mixed: list[tuple[str, AreaQuery]] = []
    for name, box in boxes.items():
        for match in Match:
            mixed.append((f"{name}-{match}", AreaQuery(bbox=box, match=match)))
    mixed += [
        ("all", AreaQuery()),
        ("region", AreaQuery(region="Prague")),
        ("region-datasource", AreaQuery(region="Turin", datasource="funny_car")),
        ("datasource", AreaQuery(datasource="edge_app")),
        ("edge-app-old-town", AreaQuery(bbox=OLD_TOWN, datasource="edge_app")),
        ("unknown-region", AreaQuery(region="Atlantis")),
        (
            "mid-week-range",
            AreaQuery(bbox=inner_city, start=datetime(2018, 3, 7, 12), end=datetime(2018, 5, 2, 6)),
        ),
        (
            "monday-range",
            AreaQuery(
                bbox=prague_box,
                match=Match.EITHER,
                start=datetime(2018, 1, 1),
                end=datetime(2018, 7, 2),
            ),
        ),
        ("open-start", AreaQuery(region="Prague", start=datetime(2018, 11, 14, 13))),
        ("open-end", AreaQuery(bbox=OLD_TOWN, match=Match.ORIGIN, end=datetime(2018, 2, 1))),
    ]
    return mixed


def expected(trips: list[Trip], query: AreaQuery) -> dict[str, Any]:
    answer = reference.weekly_average(
        trips,
        bbox=tuple(query.bbox.as_list()) if query.bbox else None,  # type: ignore[arg-type]
        region=query.region,
        datasource=query.datasource,
        start=query.start,
        end=query.end,
        match=str(query.match),
    )
    return {key: answer[key] for key in ("trips", "weeks", "first_week", "last_week", "series")}


def answered(url: str, query: AreaQuery, serving: answers.Serving | None) -> dict[str, Any]:
    with closing(connect(url)) as conn:
        body = answers.weekly_average(conn, query, serving=serving).to_json()
    return {key: body[key] for key in ("trips", "weeks", "first_week", "last_week", "series")}


@pytest.mark.parametrize("engine", ["postgis", "serving-copy"])
@pytest.mark.parametrize("way", ["planned", "scan", "complement"])
def test_every_way_equals_brute_force(
    trips_url: tuple[str, list[Trip]],
    serving: answers.Serving,
    way: str,
    engine: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, trips = trips_url
    if way != "planned":
        monkeypatch.setattr(answers, "FORCED_COMPLEMENT", way == "complement")
    chosen = None
    if engine == "serving-copy":
        chosen = serving

        def not_postgis(*_: object) -> None:
            raise AssertionError("answered from PostGIS, not from the serving copy")

        monkeypatch.setattr(queries, "count_groups", not_postgis)
    wrong = [
        name
        for name, query in questions()
        if answered(url, query, chosen) != expected(trips, query)
    ]
    assert wrong == []


def test_the_mix_reaches_every_way(trips_url: tuple[str, list[Trip]]) -> None:
    url, _ = trips_url
    seen: set[int] = set()
    with closing(connect(url)) as conn:
        summary = queries.read_summary(conn)
    for _, query in questions():
        window = (query.start or datetime(2000, 1, 1), query.end or datetime(2100, 1, 1))
        seen.update(summary.ways(query, summary.selected(query), window).tolist())
    assert seen == set(plan.Way)


def test_a_publish_refreshes_the_cached_summary(database_url: str) -> None:
    with closing(connect(database_url)) as conn:
        stage_and_publish(conn, sample(50, seed=8))
        before = answers.weekly_average(conn, AreaQuery()).trips
        conn.commit()
        stage_and_publish(conn, sample(30, seed=9))
        after = answers.weekly_average(conn, AreaQuery()).trips
    assert (before, after) == (50, 80)


def test_summary_equals_the_table_after_repeats(trips_url: tuple[str, list[Trip]]) -> None:
    url, trips = trips_url
    with closing(connect(url)) as conn:
        summary = dict(
            ((region, datasource, week), trips)
            for region, datasource, week, trips in conn.execute(
                "SELECT region, datasource, week, trips FROM trip_week_summary"
            )
        )
        extents = conn.execute(
            "SELECT max(origin_max_lon), min(destination_min_lat) FROM trip_week_summary"
            " WHERE region = 'Prague'"
        ).fetchone()
    counted = Counter(
        (trip.region, trip.datasource, reference.iso_monday(trip.datetime)) for trip in trips
    )
    assert summary == dict(counted)
    assert sum(summary.values()) == len(trips) == 3000 + len(edge_trips()) + 1000
    prague = [trip for trip in trips if trip.region == "Prague"]
    assert extents == (
        max(trip.origin_lon for trip in prague),
        min(trip.destination_lat for trip in prague),
    )


def test_regions_and_datasources_come_from_the_summary(
    trips_url: tuple[str, list[Trip]],
) -> None:
    url, trips = trips_url
    with closing(connect(url)) as conn:
        regions = {row["name"]: row["trips"] for row in queries.list_regions(conn)}
    assert regions == dict(Counter(trip.region for trip in trips))


def test_the_api_answer_cache_never_serves_an_answer_older_than_the_data(
    database_url: str,
) -> None:
    app = create_app(database_url=database_url)
    client = app.test_client()
    try:
        with closing(connect(database_url)) as conn:
            stage_and_publish(conn, sample(40, seed=21))
            first = client.get("/weekly-average?region=Prague").get_json()
            again = client.get("/weekly-average?region=Prague").get_json()
            stage_and_publish(conn, sample(400, seed=22))
            expected_now = answers.weekly_average(conn, AreaQuery(region="Prague")).trips
            conn.commit()
        after = client.get("/weekly-average?region=Prague").get_json()
    finally:
        app.extensions[EXTENSION_KEY].close()
    assert first == again
    assert after["trips"] == expected_now > first["trips"]
