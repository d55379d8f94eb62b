"""tripdata partitioned by trip week: publish writes only the weeks of its batch, skips trips
already stored whichever way it writes a partition, never runs out of disk halfway, lets
readers answer while it runs, and the migration from the unpartitioned table keeps every
trip."""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import closing
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.trips import key_uuid, sample, stage, stage_and_publish
from tripflow import answers
from tripflow.api import create_app
from tripflow.api.database import EXTENSION_KEY
from tripflow.config import Settings
from tripflow.records import Trip
from tripflow.services.postgres import ManagedPostgres
from tripflow.warehouse import publish
from tripflow.warehouse.database import connect, migrate
from tripflow.warehouse.ingestions import Status, get_batch
from tripflow.warehouse.publish import DiskBudget, NotEnoughDisk, PartitionPath, publish_batch
from tripflow.weeks import AreaQuery, BBox

INDEX_SUFFIXES = ["_destination", "_origin", "_region_datetime", "_trip_key"]

# Trips on both sides of week bounds, the last second of a Sunday and the first of the
# Monday after (the second pair across a year's end).
BORDER_TRIPS = [
    Trip("Prague", 14.42, 50.08, 14.43, 50.09, moment, "border_app")
    for moment in (
        datetime(2018, 1, 7, 23, 59, 59),
        datetime(2018, 1, 8, 0, 0, 0),
        datetime(2019, 1, 6, 23, 59, 59),
        datetime(2019, 1, 7, 0, 0, 0),
    )
]


def week_of(trip: Trip) -> date:
    day = trip.datetime.date()
    return day - timedelta(days=day.weekday())


def partitions(conn: psycopg.Connection[Any]) -> dict[date, str]:
    rows = conn.execute("SELECT week, name FROM tripdata_partitions").fetchall()
    return dict(rows)


def partition_indexes(conn: psycopg.Connection[Any], name: str) -> list[str]:
    rows = conn.execute(
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass ORDER BY 1",
        (name,),
    ).fetchall()
    return [row[0].removeprefix(name) for row in rows]


def trips_per_week(conn: psycopg.Connection[Any]) -> Counter[date]:
    rows = conn.execute(
        "SELECT date_trunc('week', datetime)::date, count(*) FROM tripdata GROUP BY 1"
    ).fetchall()
    return Counter(dict(rows))


def distinct(trips: list[Trip]) -> list[Trip]:
    return list(dict.fromkeys(trips))


def planned_paths(conn: psycopg.Connection[Any], trips: list[Trip]) -> set[PartitionPath]:
    weeks = Counter(week_of(trip) for trip in trips)
    steps = publish.plan_partitions(weeks, publish.stored_partitions(conn, weeks))
    return {step.path for step in steps}


def test_a_batch_over_many_weeks_fills_one_indexed_partition_per_week(
    conn: psycopg.Connection[Any],
) -> None:
    trips = distinct(sample(1500, seed=31) + BORDER_TRIPS)
    assert planned_paths(conn, trips) == {PartitionPath.NEW}
    stage_and_publish(conn, trips)
    weeks = Counter(week_of(trip) for trip in trips)
    assert len(weeks) >= 54
    assert set(partitions(conn)) == set(weeks)
    assert trips_per_week(conn) == weeks
    for name in partitions(conn).values():
        assert partition_indexes(conn, name) == INDEX_SUFFIXES
    # The parent holds no rows and no indexes of its own.
    assert conn.execute("SELECT count(*) FROM ONLY tripdata").fetchone() == (0,)
    assert partition_indexes(conn, "tripdata") == []


def test_trips_already_stored_are_skipped_whichever_way_a_partition_is_written(
    conn: psycopg.Connection[Any],
) -> None:
    first = distinct(sample(2000, seed=41) + BORDER_TRIPS)
    stage_and_publish(conn, first)

    # Small against every week: the indexes are kept and ON CONFLICT skips repeats,
    # trips on a week's first and last second included. (The weeks of 2019 hold one trip
    # each, which one more would rebuild.)
    second_new = sample(60, seed=42)
    second = distinct(second_new + first[:25] + BORDER_TRIPS[:2])
    assert planned_paths(conn, second) == {PartitionPath.KEEP}
    second_batch = stage_and_publish(conn, second)

    # Large against every week: each partition's indexes are dropped and rebuilt, and
    # repeats are skipped by the anti-join. Plus trips in weeks no partition holds yet.
    later = Trip("Turin", 7.68, 45.07, 7.69, 45.06, datetime(2031, 5, 17, 9, 30), "later_app")
    third_new = [*sample(3000, seed=43), later]
    third = distinct(third_new + first[100:400] + second_new[:10] + BORDER_TRIPS)
    assert planned_paths(conn, third) == {PartitionPath.REBUILD, PartitionPath.NEW}
    third_batch = stage_and_publish(conn, third)

    stored = distinct(first + second + third)
    assert conn.execute("SELECT count(*) FROM tripdata").fetchone() == (len(stored),)
    assert conn.execute(
        "SELECT count(*) FROM (SELECT trip_key FROM tripdata GROUP BY 1 HAVING count(*) > 1) AS d"
    ).fetchone() == (0,)
    assert trips_per_week(conn) == Counter(week_of(trip) for trip in stored)
    repeats = {second_batch: 25 + 2, third_batch: 300 + 10 + len(BORDER_TRIPS)}
    for batch_id, repeated in repeats.items():
        counts = conn.execute(
            "SELECT rows_loaded, rows_duplicate FROM ingestion_batch WHERE batch_id = %s",
            (batch_id,),
        ).fetchone()
        staged = len(second if batch_id == second_batch else third)
        assert counts == (staged - repeated, repeated)
    for name in partitions(conn).values():
        assert partition_indexes(conn, name) == INDEX_SUFFIXES
    # Each partition holds its own week only.
    outside = conn.execute(
        "SELECT count(*) FROM tripdata_partitions AS p"
        " JOIN tripdata AS t ON t.tableoid = p.name::regclass"
        " WHERE date_trunc('week', t.datetime)::date <> p.week"
    ).fetchone()
    assert outside == (0,)


def test_a_batch_the_disk_cannot_take_fails_before_writing_anything(
    conn: psycopg.Connection[Any], postgres_cluster: ManagedPostgres
) -> None:
    stage_and_publish(conn, sample(300, seed=51))
    before = conn.execute("SELECT count(*) FROM tripdata").fetchone()
    batch_id = stage(conn, sample(200, seed=52))
    forced_high = DiskBudget(postgres_cluster.data, reserve_bytes=10**18)
    with pytest.raises(NotEnoughDisk, match="TRIPFLOW_PUBLISH_DISK_RESERVE"):
        publish_batch(conn, batch_id, disk=forced_high)
    conn.rollback()
    assert get_batch(conn, batch_id).status is Status.STAGED
    assert conn.execute("SELECT count(*) FROM tripdata").fetchone() == before
    assert publish_batch(conn, batch_id, disk=DiskBudget(postgres_cluster.data, 0))
    conn.commit()
    assert conn.execute("SELECT count(*) FROM tripdata").fetchone() == (before[0] + 200,)


class HeldWriter:
    """A serving-copy writer that holds the publish transaction open until released: what
    a long publish looks like to readers."""

    def __init__(self) -> None:
        self.writing = threading.Event()
        self.release = threading.Event()

    def begin(self, batch_id: int, trusted: str) -> None:
        pass

    def abandon(self, batch_id: int) -> None:
        pass

    def write_batch(
        self, conn: psycopg.Connection[Any], batch_id: int, trusted: str, *, all_inserted: bool
    ) -> None:
        self.writing.set()
        self.release.wait(60)


def test_questions_postgis_answers_go_on_while_a_publish_writes_partitions(
    conn: psycopg.Connection[Any], settings: Settings, database_url: str, tmp_path: Path
) -> None:
    stage_and_publish(conn, sample(1500, seed=61))
    query = "/weekly-average?bbox=14.38,50.04,14.47,50.11"
    # An empty serving copy: every question is answered by PostGIS from tripdata.
    api_settings = settings.model_copy(
        update={"api_answer_cache": 0, "serving_dir": tmp_path / "no-copy"}
    )
    app = create_app(api_settings)
    client = app.test_client()
    expected = answers.weekly_average(conn, AreaQuery(bbox=BBox(14.38, 50.04, 14.47, 50.11)))
    conn.commit()
    # New weeks and small additions to existing ones: new partitions and kept indexes.
    # (The last week of 2018 holds only a day of trips: it would be rebuilt.)
    small = [trip for trip in sample(100, seed=62) if trip.datetime < datetime(2018, 12, 24)]
    batch = [*small, replace(BORDER_TRIPS[3], datasource="new_week_app")]
    batch_id = stage(conn, batch)
    assert planned_paths(conn, batch) == {PartitionPath.NEW, PartitionPath.KEEP}
    writer = HeldWriter()
    errors: list[BaseException] = []

    def run_publish() -> None:
        try:
            with closing(connect(database_url)) as publisher:
                publish_batch(publisher, batch_id, writer)
                publisher.commit()
        except BaseException as error:  # reported by the test below
            errors.append(error)

    worker = threading.Thread(target=run_publish)
    worker.start()
    try:
        assert writer.writing.wait(60)
        during = client.get(query)
        regions = client.get("/regions")
    finally:
        writer.release.set()
        worker.join(60)
        app.extensions[EXTENSION_KEY].close()
    assert not errors
    assert during.status_code == 200, during.get_json()
    assert during.get_json()["trips"] == expected.trips > 0
    assert regions.status_code == 200
    assert get_batch(conn, batch_id).status is Status.PUBLISHED


def test_the_migration_from_the_unpartitioned_table_keeps_every_trip(
    postgres_cluster: ManagedPostgres,
) -> None:
    url = postgres_cluster.create_database("migration_from_0004")
    migrate(url, before="0005")
    trips = distinct(sample(1200, seed=71) + BORDER_TRIPS)
    columns = (
        "trip_key, region, ST_AsEWKT(origin_coord), ST_AsEWKT(destination_coord), datetime,"
        " datasource, batch_id, file_id, loaded_at"
    )
    with closing(connect(url)) as conn:
        with conn.cursor().copy(
            "COPY tripdata (trip_key, region, origin_coord, destination_coord, datetime,"
            " datasource, batch_id, file_id) FROM STDIN"
        ) as copy:
            for number, trip in enumerate(trips):
                copy.write_row((
                    key_uuid(repr(trip)), trip.region,
                    f"SRID=4326;POINT({trip.origin_lon} {trip.origin_lat})",
                    f"SRID=4326;POINT({trip.destination_lon} {trip.destination_lat})",
                    trip.datetime, trip.datasource, 1 + number % 3, 10 + number % 7,
                ))  # fmt: skip
        conn.commit()
        before = sorted(conn.execute(f"SELECT {columns} FROM tripdata").fetchall())
    assert migrate(url)[0] == "0005_partition_tripdata"
    with closing(connect(url)) as conn:
        after = sorted(conn.execute(f"SELECT {columns} FROM tripdata").fetchall())
        assert after == before
        assert len(after) == len(trips)
        weeks = {week_of(trip) for trip in trips}
        assert set(partitions(conn)) == weeks
        for name in partitions(conn).values():
            assert partition_indexes(conn, name) == INDEX_SUFFIXES
        assert conn.execute("SELECT to_regclass('tripdata_unpartitioned')").fetchone() == (None,)
