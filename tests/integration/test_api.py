"""The API on a real PostGIS, checked against a plain-Python computation over the sample."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg.conninfo import make_conninfo
from werkzeug.routing import Rule

from tests import reference
from tests.conftest import SAMPLE, TEMPLATE
from tripflow import pipeline
from tripflow.api import create_app
from tripflow.api.database import EXTENSION_KEY, Database
from tripflow.api.trips import SERVING_KEY
from tripflow.config import Settings
from tripflow.lake import LANDING, Lake
from tripflow.services.postgres import ManagedPostgres
from tripflow.serving import maintenance
from tripflow.warehouse.database import connect
from tripflow.warehouse.ingestions import Status, set_status
from tripflow.warehouse.publish import publish_batch

ROWS = reference.read_trips(SAMPLE)
TRIPS = [row.trip for row in ROWS]

STAGE_TRIP = """
INSERT INTO staging_tripdata (batch_id, file_id, trip_key, region, origin_lon, origin_lat,
                              destination_lon, destination_lat, datetime, datasource)
VALUES (%(batch_id)s, %(file_id)s, md5(%(key)s)::uuid, %(region)s, %(origin_lon)s,
        %(origin_lat)s, %(destination_lon)s, %(destination_lat)s, %(datetime)s, %(datasource)s)
"""


def load_sample(url: str, rows: list[reference.SampleRow] = ROWS) -> None:
    """Store the sample's trips (or other rows) under batch 1 / file 1: plain INSERTs into
    staging, then tripflow's publish (which also keeps the weekly summary)."""
    with psycopg.connect(url) as conn:
        batch_id = conn.execute(
            "INSERT INTO ingestion_batch (status, files, rows_read, rows_rejected,"
            " rows_duplicate, rows_staged)"
            " VALUES ('staged', 1, %s, 0, 0, %s) RETURNING batch_id",
            (len(rows), len(rows)),
        ).fetchone()
        file_id = conn.execute(
            "INSERT INTO ingestion_file (batch_id, name, landing_path, size_bytes,"
            " checksum, rows_read, rows_rejected, rows_duplicate)"
            " VALUES (%s, 'trips.csv', '/data/raw/tripdata/trips.csv', %s, 'sha256:sample',"
            " %s, 0, 0) RETURNING file_id",
            (batch_id[0] if batch_id else None, SAMPLE.stat().st_size, len(rows)),
        ).fetchone()
        assert batch_id == (1,) and file_id == (1,)
        with conn.cursor() as cursor:
            cursor.executemany(
                STAGE_TRIP,
                [
                    {
                        "key": "\x1f".join(row.fields),
                        "region": row.trip.region,
                        "origin_lon": row.trip.origin_lon,
                        "origin_lat": row.trip.origin_lat,
                        "destination_lon": row.trip.destination_lon,
                        "destination_lat": row.trip.destination_lat,
                        "datetime": row.trip.datetime,
                        "datasource": row.trip.datasource,
                        "batch_id": 1,
                        "file_id": 1,
                    }
                    for row in rows
                ],
            )
        conn.commit()
        assert publish_batch(conn, 1)
        conn.execute(
            "UPDATE ingestion_file SET processed_path = '/data/processed/tripdata/1/trips.csv',"
            " finished_at = now()"
        )
        set_status(conn, 1, Status.DONE)
        conn.commit()


@pytest.fixture
def loaded_url(database_url: str) -> str:
    load_sample(database_url)
    return database_url


def close_pool(app: Flask) -> None:
    database: Database = app.extensions[EXTENSION_KEY]
    database.close()


@pytest.fixture
def app(loaded_url: str, settings: Settings) -> Iterator[Flask]:
    # The test's own home: its serving copy is empty (questions fall back to PostGIS).
    application = create_app(settings, database_url=loaded_url)
    yield application
    close_pool(application)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def get_json(client: FlaskClient, path: str, status: int = 200) -> Any:
    response = client.get(path)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


# The trip whose origin the edge and point boxes pass through, with its text as in the CSV.
EDGE_ROW = ROWS[0]
EDGE_LON, EDGE_LAT = EDGE_ROW.fields[1].split("(")[1].rstrip(")").split()

PRAGUE = "14.3,49.95,14.6,50.15"
TURIN = "7.5,44.95,7.75,45.15"
TINY = "14.49,50.0,14.51,50.01"
EMPTY = "0,0,1,1"
EDGE = f"{EDGE_LON},{EDGE_LAT},14.6,50.1"
POINT = f"{EDGE_LON},{EDGE_LAT},{EDGE_LON},{EDGE_LAT}"

CASES: dict[str, dict[str, str]] = {
    "no_filters": {},
    "prague_box": {"bbox": PRAGUE},
    "turin_box": {"bbox": TURIN},
    "tiny_box_origin": {"bbox": TINY, "match": "origin"},
    "tiny_box_either": {"bbox": TINY, "match": "either"},
    "box_edge_through_an_origin": {"bbox": EDGE, "match": "origin"},
    "point_box_on_an_origin": {"bbox": POINT, "match": "origin"},
    "point_box_on_an_origin_both": {"bbox": POINT, "match": "both"},
    "box_without_trips": {"bbox": EMPTY},
    "region_prague": {"region": "Prague"},
    "region_hamburg": {"region": "Hamburg"},
    "unknown_region": {"region": "Atlantis"},
    "datasource": {"datasource": "cheap_mobile"},
    "region_and_datasource": {"region": "Turin", "datasource": "baba_car"},
    "box_and_region": {"bbox": PRAGUE, "region": "Turin"},
    "turin_box_region_origin": {"bbox": TURIN, "region": "Turin", "match": "origin"},
    "prague_origin": {"bbox": PRAGUE, "match": "origin"},
    "prague_destination": {"bbox": PRAGUE, "match": "destination"},
    "prague_either": {"bbox": PRAGUE, "match": "either"},
    "prague_both": {"bbox": PRAGUE, "match": "both"},
    "range_with_empty_weeks": {"bbox": PRAGUE, "from": "2018-04-01", "to": "2018-07-01"},
    "range_ending_on_monday_midnight": {"from": "2018-05-07", "to": "2018-05-21"},
    "range_ending_just_after_monday": {"from": "2018-05-07", "to": "2018-05-21T00:00:01"},
    "range_inside_one_week": {"from": "2018-05-15 06:00:00", "to": "2018-05-17T18:30:00"},
    "range_without_trips": {"from": "2019-01-01", "to": "2019-02-01"},
    "range_across_new_year": {"from": "2018-12-20", "to": "2019-01-10", "match": "either"},
    "only_from": {"region": "Prague", "from": "2018-05-16"},
    "only_to": {"datasource": "funny_car", "to": "2018-05-14"},
    "only_from_after_last_trip": {"from": "2018-07-01"},
}


def reference_answer(params: dict[str, str]) -> dict[str, Any]:
    def moment(name: str) -> datetime | None:
        text = params.get(name)
        return datetime.fromisoformat(text) if text else None

    bbox_text = params.get("bbox")
    bbox = tuple(float(part) for part in bbox_text.split(",")) if bbox_text else None
    return reference.weekly_average(
        TRIPS,
        bbox=bbox,  # type: ignore[arg-type]
        region=params.get("region"),
        datasource=params.get("datasource"),
        start=moment("from"),
        end=moment("to"),
        match=params.get("match", "both"),
    )


def assert_matches_reference(client: FlaskClient, params: dict[str, str]) -> None:
    body = get_json(client, "/weekly-average?" + urlencode(params))
    expected = reference_answer(params)
    assert body["weekly_average"] == pytest.approx(expected.pop("weekly_average"))
    assert {key: body[key] for key in expected} == expected
    assert body["query"]["match"] == params.get("match", "both")


@pytest.mark.parametrize("params", list(CASES.values()), ids=list(CASES))
def test_weekly_average_equals_the_python_reference(
    client: FlaskClient, params: dict[str, str]
) -> None:
    assert_matches_reference(client, params)


def test_the_reference_cases_are_not_trivial() -> None:
    # Guard against a sample or a box that would make every comparison 0 == 0.
    answers = {name: reference_answer(params) for name, params in CASES.items()}
    assert answers["no_filters"]["trips"] == len(TRIPS) == 100
    assert answers["box_edge_through_an_origin"]["trips"] >= 1
    assert answers["point_box_on_an_origin"]["trips"] == 1
    assert answers["box_without_trips"]["trips"] == 0
    assert answers["box_without_trips"]["weeks"] > 0
    assert answers["range_with_empty_weeks"]["weeks"] == 14
    assert 0 in [week["trips"] for week in answers["range_with_empty_weeks"]["series"]]
    assert answers["range_ending_on_monday_midnight"]["weeks"] == 2
    assert answers["range_ending_just_after_monday"]["weeks"] == 3
    modes = {answers[f"prague_{mode}"]["trips"] for mode in ("origin", "both", "either")}
    assert len(modes) == 3


def test_box_edge_through_an_origin_counts_that_trip(client: FlaskClient) -> None:
    at_edge = get_json(client, f"/weekly-average?match=origin&bbox={POINT}")
    assert at_edge["trips"] == 1
    week = reference.iso_monday(EDGE_ROW.trip.datetime).isoformat()
    assert [entry["week_start"] for entry in at_edge["series"] if entry["trips"]] == [week]


def test_weekly_average_denominator_counts_every_week_of_the_span(client: FlaskClient) -> None:
    body = get_json(client, "/weekly-average?region=Prague&from=2018-04-01&to=2018-07-01")
    assert body["weeks"] == 14
    assert body["first_week"] == "2018-03-26"
    assert body["last_week"] == "2018-06-25"
    assert body["weekly_average"] == pytest.approx(34 / 14)
    assert body["series"][0] == {"week": "2018-W13", "week_start": "2018-03-26", "trips": 0}


def test_without_range_span_follows_region_not_box(client: FlaskClient) -> None:
    # The empty box must not shrink the span: it runs over the region's first to last trip.
    body = get_json(client, f"/weekly-average?region=Prague&bbox={EMPTY}")
    assert body["trips"] == 0
    assert body["weeks"] == 5
    assert body["weekly_average"] == 0.0


def test_unknown_region_without_range_has_zero_weeks(client: FlaskClient) -> None:
    body = get_json(client, "/weekly-average?region=Atlantis")
    assert body == {
        "trips": 0,
        "weeks": 0,
        "weekly_average": 0.0,
        "first_week": None,
        "last_week": None,
        "series": [],
        "query": {
            "bbox": None,
            "region": "Atlantis",
            "datasource": None,
            "from": None,
            "to": None,
            "match": "both",
        },
    }


def test_open_range_too_long_for_the_data_answers_400(client: FlaskClient) -> None:
    response = client.get("/weekly-average?from=1900-01-01")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["invalid_params"][0]["name"] == "from"


def named_counts(field: str) -> list[dict[str, Any]]:
    counts: dict[str, int] = {}
    for trip in TRIPS:
        name = getattr(trip, field)
        counts[name] = counts.get(name, 0) + 1
    return [{"name": name, "trips": counts[name]} for name in sorted(counts)]


def test_regions_lists_every_region_with_its_trips_sorted(client: FlaskClient) -> None:
    assert get_json(client, "/regions") == {"regions": named_counts("region")}


def test_datasources_lists_every_datasource_with_its_trips_sorted(client: FlaskClient) -> None:
    assert get_json(client, "/datasources") == {"datasources": named_counts("datasource")}


def test_region_extents_box_every_point_of_each_region(client: FlaskClient) -> None:
    expected = []
    for name in sorted({trip.region for trip in TRIPS}):
        trips = [trip for trip in TRIPS if trip.region == name]
        lons = [trip.origin_lon for trip in trips] + [trip.destination_lon for trip in trips]
        lats = [trip.origin_lat for trip in trips] + [trip.destination_lat for trip in trips]
        expected.append(
            {
                "name": name,
                "trips": len(trips),
                "first_trip": min(trip.datetime for trip in trips).isoformat(),
                "last_trip": max(trip.datetime for trip in trips).isoformat(),
                "bbox": [min(lons), min(lats), max(lons), max(lats)],
            }
        )
    assert get_json(client, "/regions/extents") == {"regions": expected}


def test_ingestions_lists_batches_newest_first_with_their_files(
    client: FlaskClient, loaded_url: str
) -> None:
    with psycopg.connect(loaded_url) as conn:
        conn.execute("INSERT INTO ingestion_batch (status, error) VALUES ('claimed', 'boom')")
    body = get_json(client, "/ingestions")
    assert body["limit"] == 50
    assert [batch["batch_id"] for batch in body["ingestions"]] == [2, 1]
    newest, loaded = body["ingestions"]
    assert newest["status"] == "claimed"
    assert newest["error"] == "boom"
    assert newest["files"] == []
    assert loaded["status"] == "done"
    assert loaded["file_count"] == 1
    assert loaded["rows_loaded"] == 100
    assert datetime.fromisoformat(loaded["finished_at"]).tzinfo is not None
    (sample,) = loaded["files"]
    assert sample["file_id"] == 1
    assert sample["name"] == "trips.csv"
    assert sample["status"] == "loaded"
    assert sample["checksum"] == "sha256:sample"
    assert sample["size_bytes"] == SAMPLE.stat().st_size
    assert sample["rows_read"] == sample["rows_loaded"] == 100
    assert sample["error"] is None
    assert datetime.fromisoformat(sample["claimed_at"]).tzinfo is not None
    only_newest = get_json(client, "/ingestions?limit=1")
    assert [batch["batch_id"] for batch in only_newest["ingestions"]] == [2]


def test_health_reports_database_and_postgis(client: FlaskClient) -> None:
    body = get_json(client, "/health")
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["postgis"].startswith("3.")


def api_rules(app: Flask) -> list[Rule]:
    """The application's routes but the web page's static files (not part of the API)."""
    rules = list(app.url_map.iter_rules())
    assert any(rule.endpoint == "page.asset" for rule in rules)
    return [rule for rule in rules if rule.endpoint != "page.asset"]


def test_openapi_documents_every_route_and_parameter(app: Flask, client: FlaskClient) -> None:
    document = get_json(client, "/openapi.json")
    assert document["openapi"] == "3.1.0"
    routes = {rule.rule for rule in api_rules(app)}
    assert routes == set(document["paths"])
    for rule in api_rules(app):
        methods = {method.lower() for method in rule.methods or ()} - {"head", "options"}
        assert methods <= set(document["paths"][rule.rule])
    parameters = document["paths"]["/weekly-average"]["get"]["parameters"]
    assert [parameter["name"] for parameter in parameters] == [
        "bbox",
        "region",
        "datasource",
        "from",
        "to",
        "match",
    ]


def test_index_lists_every_route_with_a_working_example(
    client: FlaskClient, app: Flask, loaded_url: str
) -> None:
    body = get_json(client, "/")
    listed = {endpoint["path"] for endpoint in body["endpoints"]}
    assert listed == {rule.rule for rule in api_rules(app)}
    # Similar-trip groups are answered from the serving copy only.
    with psycopg.connect(loaded_url) as conn:
        maintenance.sync(conn, app.extensions[SERVING_KEY].copy)
    for endpoint in body["endpoints"]:
        assert endpoint["description"]
        # Unbuffered: the event stream's example never ends.
        response = client.get(endpoint["example"], buffered=False)
        assert response.status_code == 200, endpoint["example"]
        response.close()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/nowhere", 404),
        ("get", "/weekly-average/2018", 404),
        ("post", "/weekly-average", 405),
        ("put", "/regions", 405),
        ("delete", "/ingestions", 405),
    ],
)
def test_http_errors_answer_problem_json(
    client: FlaskClient, method: str, path: str, status: int
) -> None:
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status
    assert body["type"] and body["title"] and body["detail"]


def test_database_down_answers_503_problem() -> None:
    app = create_app(database_url="postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=1")
    database: Database = app.extensions[EXTENSION_KEY]
    database.timeout = 1.0
    try:
        for path in ("/health", "/weekly-average", "/regions"):
            response = app.test_client().get(path)
            assert response.status_code == 503
            assert response.mimetype == "application/problem+json"
            body = response.get_json()
            assert body["type"] == "urn:tripflow:problem:database-unavailable"
            assert response.headers["Retry-After"]
    finally:
        database.close()


def test_a_question_held_up_by_a_publish_answers_503_and_summary_questions_still_answer(
    loaded_url: str,
) -> None:
    # A publish that rebuilds the indexes holds tripdata exclusively until it commits.
    application = create_app(Settings(api_lock_timeout=0.3), database_url=loaded_url)
    client = application.test_client()
    needs_trips = f"/weekly-average?match=origin&bbox={POINT}"
    try:
        with psycopg.connect(loaded_url) as publishing:
            publishing.execute("LOCK TABLE tripdata IN ACCESS EXCLUSIVE MODE")
            held_up = client.get(needs_trips)
            from_summary = client.get("/weekly-average?region=Prague")
            publishing.rollback()
        after = client.get(needs_trips)
    finally:
        close_pool(application)
    assert held_up.status_code == 503
    assert held_up.mimetype == "application/problem+json"
    assert held_up.get_json()["type"] == "urn:tripflow:problem:trips-being-published"
    assert held_up.headers["Retry-After"] == "60"
    assert from_summary.status_code == 200
    assert from_summary.get_json()["trips"] > 0
    assert after.status_code == 200
    assert after.get_json()["trips"] == 1


def test_database_without_schema_answers_500_problem(database_url: str) -> None:
    # The maintenance database of the same server has neither PostGIS nor the tables.
    app = create_app(database_url=make_conninfo(database_url, dbname="postgres"))
    try:
        response = app.test_client().get("/regions")
        assert response.status_code == 500
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["type"] == "urn:tripflow:problem:internal-error"
    finally:
        close_pool(app)


@pytest.fixture(scope="module")
def ingested_client(
    postgres_cluster: ManagedPostgres,
    template_url: str,
    spark: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FlaskClient]:
    """A client on a database filled by the real pipeline (Spark, COPY, publish)."""
    url = postgres_cluster.create_database(f"api_ingested_{os.getpid()}", template=TEMPLATE)
    lake = Lake(tmp_path_factory.mktemp("lake").as_uri())
    lake.put(SAMPLE, LANDING)
    with connect(url) as conn:
        pipeline.ingest(conn, lake, pipeline.SessionRunner(spark))
    application = create_app(database_url=url)
    yield application.test_client()
    close_pool(application)


@pytest.mark.parametrize("params", list(CASES.values()), ids=list(CASES))
def test_weekly_average_after_ingestion_equals_the_python_reference(
    ingested_client: FlaskClient, params: dict[str, str]
) -> None:
    assert_matches_reference(ingested_client, params)


def store_outlier(url: str, moment: datetime) -> None:
    """Publish one more trip, dated `moment`, as batch 2: a database loaded before the
    contract had a trip window, or with a window set wider."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "INSERT INTO ingestion_batch (status, files, rows_read, rows_rejected,"
            " rows_duplicate, rows_staged) VALUES ('staged', 1, 1, 0, 0, 1) RETURNING batch_id"
        ).fetchone()
        assert row is not None
        file_row = conn.execute(
            "INSERT INTO ingestion_file (batch_id, name, landing_path, size_bytes, checksum,"
            " rows_read, rows_rejected, rows_duplicate) VALUES (%s, 'old.csv',"
            " '/data/raw/tripdata/old.csv', 1, 'sha256:old', 1, 0, 0) RETURNING file_id",
            row,
        ).fetchone()
        assert file_row is not None
        trip = TRIPS[0]
        conn.execute(
            STAGE_TRIP,
            {
                "key": f"outlier {moment}",
                "region": trip.region,
                "origin_lon": trip.origin_lon,
                "origin_lat": trip.origin_lat,
                "destination_lon": trip.destination_lon,
                "destination_lat": trip.destination_lat,
                "datetime": moment,
                "datasource": trip.datasource,
                "batch_id": row[0],
                "file_id": file_row[0],
            },
        )
        conn.commit()
        assert publish_batch(conn, row[0])
        conn.commit()


@pytest.mark.parametrize(
    ("query", "named", "to_send"),
    [
        ("", [], "send from and to"),
        (f"bbox={PRAGUE}", [], "send from and to"),
        ("from=0001-01-01T00:00:00", ["from"], "send to"),
        ("to=2019-01-01T00:00:00", ["to"], "send from"),
    ],
)
def test_a_span_stretched_by_stored_trips_names_only_what_was_sent(
    client: FlaskClient, loaded_url: str, query: str, named: list[str], to_send: str
) -> None:
    store_outlier(loaded_url, datetime(1, 1, 1, 12, 0))

    problem = get_json(client, f"/weekly-average?{query}", status=400)

    assert [item["name"] for item in problem["invalid_params"]] == named
    assert to_send in problem["detail"]
    assert "weeks of 0001-01-01 to 20" in problem["detail"]
    # A range the cap allows is answered, the outlier outside it.
    answer = get_json(client, "/weekly-average?from=2018-01-01T00:00:00&to=2019-01-01T00:00:00")
    assert answer["trips"] == len(TRIPS)


def test_openapi_document_is_revalidated_by_its_etag(client: FlaskClient) -> None:
    first = client.get("/openapi.json")
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-cache"
    etag = first.headers["ETag"]
    again = client.get("/openapi.json", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert client.get("/openapi.json", headers={"If-None-Match": '"other"'}).status_code == 200


def test_openapi_lists_every_status_ingestions_answer(client: FlaskClient, loaded_url: str) -> None:
    with psycopg.connect(loaded_url) as conn:
        set_status(conn, 1, Status.FAILED)
        conn.commit()
    schemas = get_json(client, "/openapi.json")["components"]["schemas"]

    batches = get_json(client, "/ingestions")["ingestions"]

    assert [batch["status"] for batch in batches] == ["failed"]
    assert "failed" in schemas["IngestionBatch"]["properties"]["status"]["enum"]
    file_statuses = schemas["IngestionFile"]["properties"]["status"]["enum"]
    assert all(item["status"] in file_statuses for item in batches[0]["files"])


def test_an_overlong_url_gets_a_problem_document(client: FlaskClient) -> None:
    response = client.get("/weekly-average?region=" + "x" * 9000)
    assert response.status_code == 414
    assert response.mimetype == "application/problem+json"
    assert "more than the 8,192 this API reads" in response.get_json()["detail"]
    # Long but within the cap: read, and answered.
    assert client.get("/weekly-average?region=" + "x" * 7000).status_code == 200


def test_gunicorn_leaves_overlong_urls_to_the_api(connect_stack: Settings) -> None:
    import urllib.error
    import urllib.request

    base = f"http://{connect_stack.api_host}:{connect_stack.api_port}"
    for length in (5_000, 9_000, 100_000):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{base}/weekly-average?region={'x' * length}&bad=1")
        expected = 400 if length < 8192 else 414
        assert caught.value.code == expected
        assert caught.value.headers.get_content_type() == "application/problem+json"
        caught.value.close()
