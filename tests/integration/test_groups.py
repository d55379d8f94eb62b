"""Similar-trip groups through the real pipeline, against a plain-Python grouping of the
CSV rows: trips on H3 cell corners and edges, times on bucket borders, duplicates across
batches, every kept resolution and several bucket widths, filters, paging; then the same
after the copy's segments are merged and after a rebuild."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import h3
import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.integration import trips as generated
from tests.integration.test_api import close_pool
from tripflow import pipeline
from tripflow.api import create_app
from tripflow.config import Settings
from tripflow.lake import LANDING, Lake
from tripflow.serving import maintenance
from tripflow.serving.copy import ServingCopy
from tripflow.serving.groups import GroupGrid

HEADER = ["region", "origin_coord", "destination_coord", "datetime", "datasource"]
# Times on and beside the borders of quarter-hour, hour and three-hour buckets, and the
# ends of the day.
BORDER_TIMES = ["00:00:00", "07:59:59", "08:00:00", "08:14:59", "08:15:00", "08:59:59",
                "09:00:00", "11:59:59", "12:00:00", "23:44:59", "23:45:00", "23:59:59"]  # fmt: skip
SOURCES = ["funny_car", "cheap_mobile", "bad_diesel_vehicles"]


def wkt(lat: float, lon: float) -> str:
    return f"POINT ({lon!r} {lat!r})"


def border_rows() -> list[list[str]]:
    """Trips from the corners and edge midpoints of two H3 cells (each kept resolution) in
    Prague to those of a cell in its centre, at bucket-border times on several days."""
    rows = []
    corners: list[tuple[float, float]] = []
    for resolution in (7, 8):
        for lat, lon in ((50.0755, 14.4350), (50.0875, 14.4205)):
            boundary = h3.cell_to_boundary(h3.latlng_to_cell(lat, lon, resolution))
            corners += boundary
            corners += [
                ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
                for a, b in zip(boundary, boundary[1:] + boundary[:1], strict=True)
            ]
    targets = h3.cell_to_boundary(h3.latlng_to_cell(50.0875, 14.4205, 8))
    start = datetime(2018, 5, 7)
    for number, (lat, lon) in enumerate(corners):
        for day in range(0, 21, 4):
            clock = BORDER_TIMES[(number + day) % len(BORDER_TIMES)]
            moment = f"{(start + timedelta(days=day)).date().isoformat()} {clock}"
            target = targets[(number + day) % len(targets)]
            source = SOURCES[(number + day) % len(SOURCES)]
            rows.append(["Prague", wkt(lat, lon), wkt(*target), moment, source])
    return rows


def generated_rows(count: int, seed: int) -> list[list[str]]:
    return [
        [trip.region, wkt(trip.origin_lat, trip.origin_lon),
         wkt(trip.destination_lat, trip.destination_lon),
         trip.datetime.isoformat(sep=" "), trip.datasource]
        for trip in generated.sample(count, seed)
    ]  # fmt: skip


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def point(text: str) -> tuple[float, float]:
    lon, lat = text.removeprefix("POINT (").removesuffix(")").split()
    return float(lat), float(lon)


def expected_groups(
    rows: list[list[str]],
    resolution: int,
    bucket: int,
    region: str | None = None,
    datasource: str | None = None,
    min_trips: int = 1,
) -> list[tuple[str, str, str, str, int]]:
    """Group the distinct trips of the rows by region, cells and bucket, the plain way:
    largest first, ties by region, then the cells as integers, then time of day."""
    distinct = {tuple(row) for row in rows}
    counts: Counter[tuple[str, int, int, int]] = Counter()
    for row_region, origin, destination, moment, source in distinct:
        if region is not None and row_region != region:
            continue
        if datasource is not None and source != datasource:
            continue
        when = datetime.fromisoformat(moment)
        counts[
            (
                row_region,
                h3.str_to_int(h3.latlng_to_cell(*point(origin), resolution)),
                h3.str_to_int(h3.latlng_to_cell(*point(destination), resolution)),
                (when.hour * 60 + when.minute) // bucket,
            )
        ] += 1
    ranked = sorted(
        (key for key, trips in counts.items() if trips >= min_trips),
        key=lambda key: (-counts[key], key[0].encode(), key[1], key[2], key[3]),
    )
    return [
        (
            key[0],
            h3.int_to_str(key[1]),
            h3.int_to_str(key[2]),
            f"{key[3] * bucket // 60:02d}:{key[3] * bucket % 60:02d}",
            counts[key],
        )
        for key in ranked
    ]


def get(client: FlaskClient, path: str, status: int = 200, **params: Any) -> Any:
    response = client.get(f"{path}?{urlencode(params)}" if params else path)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def every_group(client: FlaskClient, **params: Any) -> tuple[list[Any], dict[str, Any]]:
    """Read every page of an answer, 7 groups at a time; return the groups and page one."""
    found: list[Any] = []
    first = None
    while True:
        page = get(client, "/trip-groups", **params, limit=7, offset=len(found))
        first = first or page
        assert page["total_groups"] == first["total_groups"]
        found += page["groups"]
        if len(page["groups"]) < 7:
            break
    assert len(found) == first["total_groups"]
    return found, first


def run_groups(settings: Settings, *options: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "TRIPFLOW_HOME": str(settings.home_dir),
        "TRIPFLOW_DATABASE_URL": settings.database_dsn,
        "TRIPFLOW_SERVING_DIR": str(settings.serving_dir_path),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "tripflow"), "groups", *options],
        env=environment,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def api(settings: Settings, database_url: str) -> Iterator[Flask]:
    application = create_app(settings, database_url=database_url)
    yield application
    close_pool(application)


def check_against_rows(client: FlaskClient, rows: list[list[str]]) -> int:
    """Compare many questions with the plain grouping; return how many groups were seen."""
    seen = 0
    questions: list[dict[str, Any]] = [
        {"resolution": 8, "bucket": 60},
        {"resolution": 7, "bucket": 15},
        {"resolution": 8, "bucket": 180, "region": "Prague"},
        {"resolution": 7, "bucket": 60, "datasource": "funny_car", "min_trips": 2},
        {"resolution": 8, "bucket": 1440, "region": "Prague", "datasource": "cheap_mobile"},
        {"resolution": 7, "bucket": 30, "min_trips": 3},
    ]
    for question in questions:
        found, first = every_group(client, **question)
        expected = expected_groups(rows, **question)
        assert [
            (
                group["region"],
                group["origin"]["cell"],
                group["destination"]["cell"],
                group["time_of_day"]["from"],
                group["trips"],
            )
            for group in found
        ] == expected, question
        assert expected, f"no group for {question}: the data does not test it"
        span = get(
            client,
            "/weekly-average",
            **{name: question[name] for name in ("region", "datasource") if name in question},
        )
        assert first["weeks"] == span["weeks"] and first["trips"] == span["trips"]
        for group in found:
            assert group["weekly_average"] == pytest.approx(group["trips"] / span["weeks"])
            lat, lon = h3.cell_to_latlng(group["origin"]["cell"])
            assert (group["origin"]["lat"], group["origin"]["lon"]) == pytest.approx((lat, lon))
            bucket = question["bucket"]
            start = int(group["time_of_day"]["from"][:2]) * 60 + int(
                group["time_of_day"]["from"][3:]
            )
            end = start + bucket
            assert group["time_of_day"]["to"] == f"{end // 60:02d}:{end % 60:02d}"
        seen += len(found)
    return seen


def test_groups_equal_a_plain_grouping_of_the_rows_across_batches_merges_and_rebuilds(
    conn: psycopg.Connection[Any],
    settings: Settings,
    runner: pipeline.SessionRunner,
    api: Flask,
    tmp_path: Path,
) -> None:
    lake = Lake(settings.lake_root)
    copy = ServingCopy.from_settings(settings)
    borders = border_rows()
    first = generated_rows(3000, seed=11) + borders[::2]
    # The second batch repeats part of the first: stored once, counted once.
    second = generated_rows(2000, seed=12) + borders[1::2] + first[:500]
    lake.put(write_csv(tmp_path / "one.csv", first), LANDING, name="one.csv")
    pipeline.ingest(conn, lake, runner, serving=copy)
    lake.put(write_csv(tmp_path / "two.csv", second), LANDING, name="two.csv")
    pipeline.ingest(conn, lake, runner, serving=copy)
    assert len([segment for segment in copy.segments() if segment.rows]) == 2
    rows = first + second
    client = api.test_client()
    assert check_against_rows(client, rows) > 500

    # The two segments merged into one, then the whole copy written again from tripdata.
    copy.max_segments = 1
    assert maintenance.compact(conn, copy) is not None
    assert len(copy.segments()) == 1
    check_against_rows(client, rows)
    maintenance.rebuild(conn, copy)
    check_against_rows(client, rows)


def test_groups_refuse_what_the_copy_does_not_keep_and_say_what_writes_it(
    conn: psycopg.Connection[Any], settings: Settings, database_url: str
) -> None:
    generated.stage_and_publish(conn, generated.sample(300, seed=5))
    app = create_app(settings, database_url=database_url)
    client = app.test_client()
    try:
        # Published without the copy: groups wait for a sync.
        behind = get(client, "/trip-groups", 503)
        assert behind["type"] == "urn:tripflow:problem:groups-unavailable"
        assert "tripflow serving sync" in behind["detail"]
        copy = ServingCopy.from_settings(settings)
        maintenance.sync(conn, copy)
        answer = get(client, "/trip-groups")
        assert answer["resolution"] == 8 and answer["bucket_minutes"] == 60
        assert sum(group["trips"] for group in answer["groups"]) <= 300
        for params, name in [
            ({"resolution": 9}, "resolution"),
            ({"resolution": "x"}, "resolution"),
            ({"bucket": 7}, "bucket"),
            ({"bucket": 50}, "bucket"),
            ({"bucket": 2880}, "bucket"),
            ({"min_trips": 0}, "min_trips"),
            ({"limit": 1001}, "limit"),
            ({"offset": -1}, "offset"),
            ({"region": " "}, "region"),
            ({"size": 3}, "size"),
        ]:
            refused = get(client, "/trip-groups", 400, **params)
            assert [item["name"] for item in refused["invalid_params"]] == [name], params
        kept = get(client, "/trip-groups", 400, resolution=9)["invalid_params"][0]["reason"]
        assert "kept: 7, 8" in kept
        assert get(client, "/trip-groups", region="Nowhere")["groups"] == []
        assert get(client, "/trip-groups", offset=10**6)["groups"] == []

        # The terminal prints the same top groups; a bad option is named, with no traceback.
        top = get(client, "/trip-groups", resolution=7, bucket=120, limit=5)
        printed = run_groups(settings, "--resolution", "7", "--bucket", "120", "--limit", "5")
        assert printed.returncode == 0, printed.stderr
        lines = [line for line in printed.stdout.splitlines() if "│" in line]
        assert len(lines) == 5
        for line, group in zip(lines, top["groups"], strict=True):
            assert group["origin"]["cell"] in line and group["destination"]["cell"] in line
            assert f"{group['time_of_day']['from']}-{group['time_of_day']['to']}" in line
        refused = run_groups(settings, "--bucket", "7")
        assert refused.returncode == 2
        assert "--bucket:" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        close_pool(app)

    # Another grid asked for: the segments written before it lack it until a rebuild.
    finer = settings.model_copy(update={"group_resolutions": [9, 8], "group_minutes": 5})
    app = create_app(finer, database_url=database_url)
    client = app.test_client()
    try:
        stale = get(client, "/trip-groups", 503)
        assert "tripflow serving rebuild" in stale["detail"]
        assert get(client, "/trip-groups", resolution=8, bucket=60)["groups"]
        maintenance.rebuild(conn, ServingCopy.from_settings(finer))
        answer = get(client, "/trip-groups", bucket=5)
        assert answer["resolution"] == 9
        assert answer["groups"][0]["time_of_day"]["to"][-2:] in {
            f"{m:02d}" for m in range(0, 60, 5)
        }
        segment = ServingCopy.from_settings(finer).segments()[0]
        assert segment.groups == GroupGrid(frozenset({8, 9}), 5)
    finally:
        close_pool(app)
