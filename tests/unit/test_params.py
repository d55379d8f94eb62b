"""Query-string parsing: every bad input is a precise 400, decided before any database access."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tripflow.api import create_app
from tripflow.api.database import EXTENSION_KEY, Database
from tripflow.api.params import (
    MOMENT_PATTERN,
    NAME_PATTERN,
    ParamError,
    parse_area_query,
    parse_bbox,
    parse_ingestion_limit,
    parse_moment,
    parse_name,
)
from tripflow.weeks import AreaQuery, BBox, Match

# Nothing listens on port 1: a request that reached the database would fail with a 503.
UNREACHABLE_URL = "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=1"


def parse(query_string: str) -> AreaQuery:
    """Parse a raw query string the way Flask hands it to the parser."""
    args: dict[str, list[str]] = {}
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        args.setdefault(name, []).append(value)
    return parse_area_query(args)


def reasons(query_string: str) -> dict[str, str]:
    """Return the rejected parameter names with their reasons."""
    with pytest.raises(ParamError) as caught:
        parse(query_string)
    return {item.name: item.reason for item in caught.value.invalid}


BAD_QUERIES: list[tuple[str, str, str]] = [
    # (query string, parameter, words its reason must contain)
    ("bbox=1,2,3", "bbox", "4 comma-separated numbers"),
    ("bbox=1,2,3,4,5", "bbox", "4 comma-separated numbers"),
    ("bbox=", "bbox", "4 comma-separated numbers"),
    ("bbox=1,2,,4", "bbox", "max_lon '' is not a decimal number"),
    ("bbox=a,2,3,4", "bbox", "min_lon 'a' is not a decimal number"),
    ("bbox=nan,2,3,4", "bbox", "min_lon 'nan' is not a decimal number"),
    ("bbox=1,inf,3,4", "bbox", "min_lat 'inf' is not a decimal number"),
    ("bbox=1,2,3,1e999", "bbox", "max_lat '1e999' is not a finite number"),
    ("bbox=1_0,2,3,4", "bbox", "min_lon '1_0' is not a decimal number"),
    ("bbox=-180.5,2,3,4", "bbox", "min_lon -180.5 is outside [-180, 180]"),
    ("bbox=1,2,181,4", "bbox", "max_lon 181 is outside [-180, 180]"),
    ("bbox=1,-91,3,4", "bbox", "min_lat -91 is outside [-90, 90]"),
    ("bbox=1,2,3,90.0001", "bbox", "max_lat 90.0001 is outside [-90, 90]"),
    ("bbox=3,2,1,4", "bbox", "min_lon 3 is greater than max_lon 1"),
    ("bbox=1,5,3,4", "bbox", "min_lat 5 is greater than max_lat 4"),
    ("region=", "region", "must not be empty"),
    ("region=%20%20", "region", "must not be empty"),
    ("datasource=", "datasource", "must not be empty"),
    # No stored name holds a control character; NUL would not even reach PostgreSQL.
    ("region=Prag%00ue", "region", "holds the control character '\\x00'"),
    ("datasource=funny%C2%85car", "datasource", "holds the control character '\\x85'"),
    ("region=%09Prague", "region", "holds the control character '\\t'"),
    ("from=2018-5-1", "from", "is not YYYY-MM-DD"),
    ("from=2018-05-01T10:00", "from", "is not YYYY-MM-DD"),
    ("from=2018-05-01T10:00:00Z", "from", "is not YYYY-MM-DD"),
    ("from=2018-05-01T10:00:00.5", "from", "is not YYYY-MM-DD"),
    ("from=yesterday", "from", "is not YYYY-MM-DD"),
    ("from=%202018-05-01", "from", "is not YYYY-MM-DD"),
    ("to=2018-05-01%0A", "to", "is not YYYY-MM-DD"),
    # Arabic-Indic digits.
    ("from=%D9%A2%D9%A0%D9%A1%D9%A8-05-01", "from", "is not YYYY-MM-DD"),
    ("from=0000-01-01", "from", "is not a calendar date"),
    ("from=2018-02-30", "from", "is not a calendar date"),
    ("to=2018-13-01", "to", "is not a calendar date"),
    ("to=2018-05-01T24:00:00", "to", "is not a valid date and time"),
    ("from=2018-05-02&to=2018-05-01", "to", "must be later than from"),
    ("from=2018-05-01&to=2018-05-01", "to", "must be later than from"),
    ("from=2018-05-01T10:00:00&to=2018-05-01 10:00:00", "to", "must be later than from"),
    ("from=1900-01-01&to=2100-01-01", "to", "more than the limit of 5300"),
    ("match=all", "match", "is not one of both, origin, destination, either"),
    ("match=BOTH", "match", "is not one of both, origin, destination, either"),
    ("match=", "match", "is not one of"),
    ("match=both%20", "match", "is not one of"),
    ("box=1,2,3,4", "box", "unknown parameter"),
    ("from_=2018-05-01", "from_", "unknown parameter"),
    ("region=Prague&region=Turin", "region", "given 2 times"),
    ("match=both&match=both", "match", "given 2 times"),
    ("bbox=1,2,3,4&bbox=1,2,3,4&bbox=1,2,3,4", "bbox", "given 3 times"),
]


@pytest.mark.parametrize(("query_string", "name", "words"), BAD_QUERIES)
def test_parser_rejects_bad_parameter_with_precise_reason(
    query_string: str, name: str, words: str
) -> None:
    found = reasons(query_string)
    assert name in found
    assert words in found[name]


def test_parser_reports_every_bad_parameter_at_once() -> None:
    found = reasons("bbox=1,2&match=any&region=&colour=red&from=2018-05-01&from=2018-05-02")
    assert set(found) == {"bbox", "match", "region", "colour", "from"}


def test_parser_accepts_a_full_query() -> None:
    query = parse(
        "bbox=14.3,49.9,14.7,50.2&region=Prague&datasource=cheap_mobile"
        "&from=2018-05-01&to=2018-06-01T12:30:00&match=either"
    )
    assert query == AreaQuery(
        bbox=BBox(14.3, 49.9, 14.7, 50.2),
        region="Prague",
        datasource="cheap_mobile",
        start=datetime(2018, 5, 1),
        end=datetime(2018, 6, 1, 12, 30),
        match=Match.EITHER,
    )


def test_parser_defaults_to_all_trips_and_match_both() -> None:
    assert parse("") == AreaQuery(match=Match.BOTH)


def test_parser_accepts_a_space_or_plus_between_date_and_time() -> None:
    assert parse("from=2018-05-01 10:00:00").start == datetime(2018, 5, 1, 10)
    assert parse("from=2018-05-01+10:00:00").start == datetime(2018, 5, 1, 10)


def test_parser_accepts_either_end_of_the_range_alone() -> None:
    assert parse("from=2018-05-01").end is None
    assert parse("to=2018-05-01").start is None


def test_parser_trims_region_and_datasource() -> None:
    query = parse("region=%20Prague%20&datasource=funny_car%20")
    assert (query.region, query.datasource) == ("Prague", "funny_car")


def test_bbox_accepts_a_degenerate_point_box_and_the_globe_edges() -> None:
    assert parse_bbox("14.5,50,14.5,50") == BBox(14.5, 50.0, 14.5, 50.0)
    assert parse_bbox("-180,-90,180,90") == BBox(-180.0, -90.0, 180.0, 90.0)
    assert parse_bbox(" 1 , 2 ,3e0, +4.") == BBox(1.0, 2.0, 3.0, 4.0)


def test_name_pattern_of_the_openapi_document_accepts_what_the_parser_accepts() -> None:
    # Every character of the Basic Multilingual Plane (all whitespace and control characters
    # are there) and a few beyond it, alone, between letters and at either end: the document's
    # pattern and parse_name must draw the same line. fullmatch: JSON Schema reads `$` as
    # the end of the text, where Python's re.match would also take a final newline.
    pattern = re.compile(NAME_PATTERN)

    def parses(text: str) -> bool:
        try:
            parse_name(text)
        except ValueError:
            return False
        return True

    codes = [*range(0xD800), *range(0xE000, 0x10000), 0x1F600, 0x20000, sys.maxunicode]
    for character in map(chr, codes):
        for text in (character, f"a{character}b", f"{character}ab", f"ab{character}"):
            assert bool(pattern.fullmatch(text)) == parses(text), (hex(ord(character)), text)


def test_moment_pattern_of_the_openapi_document_accepts_what_the_parser_accepts() -> None:
    pattern = re.compile(MOMENT_PATTERN)

    def parses(text: str) -> bool:
        try:
            parse_moment(text)
        except ValueError:
            return False
        return True

    years = ["0000", "0001", "0004", "0100", "0400", "1900", "2000", "2018", "2024", "9999"]
    days = [
        f"{year}-{month:02d}-{day:02d}"
        for year in years
        for month in range(14)
        for day in range(33)
    ]
    times = ["00:00:00", "23:59:59", "24:00:00", "12:60:00", "12:00:60", "9:00:00"]
    texts = [*days, *(f"2024-02-29{sep}{time}" for sep in "T t" for time in times)]
    texts += ["2018-05-01 ", " 2018-05-01", "2018-05-01\n", "2018-5-01", "20180501", ""]
    assert sum(map(parses, texts)) > 3000
    # fullmatch: JSON Schema's `$` ends the text (see the name pattern's test).
    for text in texts:
        assert bool(pattern.fullmatch(text)) == parses(text), text


def test_moment_accepts_a_bare_date_as_midnight() -> None:
    assert parse_moment("2018-12-31") == datetime(2018, 12, 31)
    assert parse_moment("2018-12-31T23:59:59") == datetime(2018, 12, 31, 23, 59, 59)


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "ten", "1.5", "", " 5", "5\n", "\u0665"])
def test_ingestion_limit_must_be_a_whole_number_in_range(limit: str) -> None:
    with pytest.raises(ParamError, match="limit"):
        parse_ingestion_limit({"limit": [limit]})


def test_ingestion_limit_defaults_to_fifty() -> None:
    assert parse_ingestion_limit({}) == 50
    assert parse_ingestion_limit({"limit": ["7"]}) == 7


# Through the application: the pool points nowhere and must never be opened.


@pytest.fixture
def app() -> Iterator[Flask]:
    application = create_app(database_url=UNREACHABLE_URL)
    yield application
    database: Database = application.extensions[EXTENSION_KEY]
    assert not database.is_open, "a bad request reached the database"
    database.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def assert_problem_400(response: Any, name: str, words: str) -> None:
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"] == "urn:tripflow:problem:invalid-parameters"
    assert body["title"] == "Invalid query parameters"
    assert body["status"] == 400
    assert name in body["detail"]
    found = {item["name"]: item["reason"] for item in body["invalid_params"]}
    assert words in found[name]


@pytest.mark.parametrize(("query_string", "name", "words"), BAD_QUERIES)
def test_weekly_average_answers_400_problem_before_touching_the_database(
    client: FlaskClient, query_string: str, name: str, words: str
) -> None:
    response = client.get("/weekly-average?" + query_string)
    assert_problem_400(response, name, words)


@pytest.mark.parametrize("path", ["/regions", "/datasources", "/health", "/", "/openapi.json"])
def test_endpoint_without_parameters_rejects_any_parameter(client: FlaskClient, path: str) -> None:
    response = client.get(path + "?region=Prague")
    assert_problem_400(response, "region", "unknown parameter")


def test_ingestions_rejects_a_bad_limit(client: FlaskClient) -> None:
    assert_problem_400(client.get("/ingestions?limit=0"), "limit", "whole number from 1 to 1000")
    assert_problem_400(client.get("/ingestions?limit=5&limit=6"), "limit", "given 2 times")
    assert_problem_400(client.get("/ingestions?page=2"), "page", "unknown parameter")


def test_pages_without_database_answer_without_opening_the_pool(client: FlaskClient) -> None:
    index = client.get("/")
    assert index.status_code == 200
    assert index.get_json()["endpoints"]
    assert client.get("/openapi.json").get_json()["openapi"] == "3.1.0"


def test_unknown_path_answers_404_problem(client: FlaskClient) -> None:
    response = client.get("/weekly_average")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 404


def test_wrong_method_answers_405_problem_with_allow_header(client: FlaskClient) -> None:
    response = client.delete("/weekly-average")
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["title"] == "Method Not Allowed"
    assert "GET" in response.headers["Allow"]
