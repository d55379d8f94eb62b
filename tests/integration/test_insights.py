"""The two insight questions, on the sample and on trips made to tie, against answers
computed here from the CSV rows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient

from tests import reference
from tests.conftest import SAMPLE
from tests.integration.test_api import close_pool, load_sample
from tripflow.api import create_app

LATEST = "/insights/latest-datasource-of-top-regions"
REGIONS_OF = "/insights/regions-of-datasource"


def expected_latest(trips: list[Any]) -> dict[str, Any]:
    """Answer the first question by walking the trips, as a reader of the data would."""
    counts = Counter(trip.region for trip in trips)
    top = sorted(counts, key=lambda region: (-counts[region], region.encode()))[:2]
    sources: dict[str, dict[str, Any]] = {}
    for trip in trips:
        if trip.region not in top:
            continue
        entry = sources.setdefault(trip.datasource, {"trips": 0, "last": None, "region": None})
        entry["trips"] += 1
        better = entry["last"] is None or trip.datetime > entry["last"]
        tie = trip.datetime == entry["last"] and trip.region.encode() < entry["region"].encode()
        if better or tie:
            entry["last"], entry["region"] = trip.datetime, trip.region
    ranked = sorted(sources, key=lambda name: (-sources[name]["last"].timestamp(), name.encode()))
    datasources = [
        {
            "name": name,
            "trips": sources[name]["trips"],
            "last_trip": sources[name]["last"].isoformat(),
            "last_region": sources[name]["region"],
        }
        for name in ranked
    ]
    return {
        "regions": [{"name": region, "trips": counts[region]} for region in top],
        "latest": datasources[0] if datasources else None,
        "datasources": datasources,
    }


def expected_regions(trips: list[Any], datasource: str) -> list[dict[str, Any]]:
    """Answer the second question by walking the trips."""
    mine = [trip for trip in trips if trip.datasource == datasource]
    return [
        {
            "name": region,
            "trips": sum(trip.region == region for trip in mine),
            "first_trip": min(t.datetime for t in mine if t.region == region).isoformat(),
            "last_trip": max(t.datetime for t in mine if t.region == region).isoformat(),
        }
        for region in sorted({trip.region for trip in mine}, key=str.encode)
    ]


def client_for(database_url: str, rows: list[reference.SampleRow]) -> Iterator[FlaskClient]:
    load_sample(database_url, rows)
    app = create_app(database_url=database_url)
    yield app.test_client()
    close_pool(app)


@pytest.fixture
def sample_client(database_url: str) -> Iterator[FlaskClient]:
    yield from client_for(database_url, reference.read_trips(SAMPLE))


# Four regions tie at 3 trips behind Mid's 4: Alpha wins the tie by code point (Ärhus sorts
# after Zeta). Two datasources' latest trips tie: a_src wins by name. z_src is later than
# both but only in Zeta, which is not a top region.
TIES = [
    ("Mid", "2018-03-01 10:00:00", "a_src"),
    ("Mid", "2018-02-01 10:00:00", "b_src"),
    ("Mid", "2018-01-01 10:00:00", "c_src"),
    ("Mid", "2018-01-02 10:00:00", "c_src"),
    ("Alpha", "2018-03-01 10:00:00", "b_src"),
    ("Alpha", "2018-01-05 10:00:00", "c_src"),
    ("Alpha", "2018-01-06 10:00:00", "d_src"),
    ("Beta", "2018-05-01 10:00:00", "e_src"),
    ("Beta", "2018-01-01 10:00:00", "a_src"),
    ("Beta", "2018-01-02 10:00:00", "a_src"),
    ("Zeta", "2018-04-01 10:00:00", "z_src"),
    ("Zeta", "2018-01-01 10:00:00", "z_src"),
    ("Zeta", "2018-01-03 10:00:00", "a_src"),
    ("Ärhus", "2018-06-01 10:00:00", "z_src"),
    ("Ärhus", "2018-01-01 10:00:00", "c_src"),
    ("Ärhus", "2018-01-04 10:00:00", "c_src"),
]


def tie_rows(directory: Path) -> list[reference.SampleRow]:
    path = directory / "ties.csv"
    lines = ["region,origin_coord,destination_coord,datetime,datasource"]
    lines += [
        f"{region},POINT (14.4 50.0),POINT (14.5 50.1),{moment},{source}"
        for region, moment, source in TIES
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return reference.read_trips(path)


@pytest.fixture
def ties_client(tmp_path: Path, database_url: str) -> Iterator[FlaskClient]:
    yield from client_for(database_url, tie_rows(tmp_path))


def test_the_latest_datasource_of_the_two_busiest_regions_matches_the_sample(
    sample_client: FlaskClient,
) -> None:
    trips = [row.trip for row in reference.read_trips(SAMPLE)]
    response = sample_client.get(LATEST)
    assert response.status_code == 200
    assert response.get_json() == expected_latest(trips)


def test_ties_are_broken_by_code_point(ties_client: FlaskClient, tmp_path: Path) -> None:
    answer = ties_client.get(LATEST).get_json()
    assert [region["name"] for region in answer["regions"]] == ["Mid", "Alpha"]
    assert answer["latest"] == {
        "name": "a_src",
        "trips": 1,
        "last_trip": datetime(2018, 3, 1, 10).isoformat(),
        "last_region": "Mid",
    }
    assert [source["name"] for source in answer["datasources"]] == [
        "a_src",
        "b_src",
        "d_src",
        "c_src",
    ]
    assert answer == expected_latest([row.trip for row in tie_rows(tmp_path)])


def test_the_regions_of_each_datasource_match_the_sample(sample_client: FlaskClient) -> None:
    trips = [row.trip for row in reference.read_trips(SAMPLE)]
    for datasource in sorted({trip.datasource for trip in trips}):
        response = sample_client.get(f"{REGIONS_OF}?datasource={quote(datasource)}")
        assert response.status_code == 200
        assert response.get_json() == {
            "datasource": datasource,
            "regions": expected_regions(trips, datasource),
        }
    # Trimmed like every name parameter; an unknown one appears nowhere.
    padded = sample_client.get(f"{REGIONS_OF}?datasource=%20cheap_mobile%20").get_json()
    assert padded["datasource"] == "cheap_mobile" and padded["regions"]
    unknown = sample_client.get(f"{REGIONS_OF}?datasource=nobody").get_json()
    assert unknown == {"datasource": "nobody", "regions": []}


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("", "datasource"),
        ("?datasource=", "datasource"),
        ("?datasource=%20%20", "datasource"),
        ("?datasource=a%00b", "datasource"),
        ("?datasource=a&datasource=b", "datasource"),
        ("?datasource=a&region=Prague", "region"),
    ],
)
def test_a_bad_datasource_question_is_a_problem_naming_the_parameter(
    sample_client: FlaskClient, query: str, named: str
) -> None:
    response = sample_client.get(REGIONS_OF + query)
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"
    assert named in [item["name"] for item in response.get_json()["invalid_params"]]


def test_the_latest_question_takes_no_parameters(sample_client: FlaskClient) -> None:
    response = sample_client.get(LATEST + "?region=Prague")
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"


def test_an_empty_warehouse_has_no_latest_datasource(database_url: str) -> None:
    app = create_app(database_url=database_url)
    try:
        answer = app.test_client().get(LATEST).get_json()
    finally:
        close_pool(app)
    assert answer == {"regions": [], "latest": None, "datasources": []}
