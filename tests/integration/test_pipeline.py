"""The pipeline on a real PostGIS and a real Spark session: claim, Spark, staging, publish."""

from __future__ import annotations

import csv
import json
import threading
import uuid
from dataclasses import astuple
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.dataset as pads
import pytest

from tests import badinput, hostile
from tests.conftest import SAMPLE
from tests.reference import read_trips
from tests.s3_fixture import s3_lake
from tripflow import pipeline
from tripflow.config import Settings
from tripflow.generate import generate_trips
from tripflow.lake import LANDING, Lake
from tripflow.records import Trip, check_line
from tripflow.serving.copy import ServingCopy
from tripflow.warehouse import ingestions
from tripflow.warehouse.database import connect
from tripflow.warehouse.load import load_staging
from tripflow.warehouse.publish import publish_batch

HEADER = "region,origin_coord,destination_coord,datetime,datasource"
TRIPS_OF_SAMPLE = [row.trip for row in read_trips(SAMPLE)]


@pytest.fixture(params=["file", "hdfs", "s3"])
def lake(request: pytest.FixtureRequest, settings: Settings) -> Lake:
    """The test's lake: a local directory, or a directory of its own on the real HDFS or on
    the real S3 server."""
    if request.param == "file":
        return Lake(settings.lake_root)
    if request.param == "s3":
        return s3_lake(request.getfixturevalue("s3"))
    cluster = request.getfixturevalue("hdfs")
    return Lake(
        cluster.url(f"/tests/{uuid.uuid4().hex}"),
        port=cluster.settings.hdfs_http_port,
        user=cluster.user,
    )


def scalar(conn: psycopg.Connection[Any], query: str, *params: object) -> Any:
    row = conn.execute(query, params).fetchone()
    conn.commit()
    assert row is not None
    return row[0]


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def batch_row(conn: psycopg.Connection[Any], batch_id: int) -> dict[str, Any]:
    return ingestions.batch_summary(conn, batch_id)


def claim_sample(conn: psycopg.Connection[Any], lake: Lake) -> ingestions.Batch:
    """Land the sample and claim it as a batch, as the first step of `ingest` does."""
    lake.put(SAMPLE, LANDING)
    batch = ingestions.claim_batch(conn, lake)
    assert batch is not None
    return batch


def counts(summary: dict[str, Any]) -> tuple[int, int, int, int]:
    """Rows read, loaded, rejected and duplicate of a batch."""
    return (
        summary["rows_read"],
        summary["rows_loaded"],
        summary["rows_rejected"],
        summary["rows_duplicate"],
    )


def test_ingests_sample_into_tripdata_with_valid_geometries(
    conn: psycopg.Connection[Any], lake: Lake, runner: pipeline.SessionRunner
) -> None:
    lake.put(SAMPLE, LANDING)

    (batch_id,) = pipeline.ingest(conn, lake, runner)

    assert scalar(conn, "SELECT count(*) FROM tripdata") == 100
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM tripdata WHERE ST_IsValid(origin_coord)"
            " AND ST_IsValid(destination_coord) AND ST_SRID(origin_coord) = 4326"
            " AND GeometryType(destination_coord) = 'POINT' AND batch_id = %s",
            batch_id,
        )
        == 100
    )
    with SAMPLE.open() as handle:
        first = next(csv.DictReader(handle))
    stored = conn.execute(
        "SELECT ST_AsText(origin_coord), ST_AsText(destination_coord), datetime::text"
        " FROM tripdata WHERE region = %s AND datasource = %s AND datetime = %s",
        (first["region"], first["datasource"], first["datetime"]),
    ).fetchone()
    assert stored == (
        first["origin_coord"].replace("POINT (", "POINT("),
        first["destination_coord"].replace("POINT (", "POINT("),
        first["datetime"],
    )
    summary = batch_row(conn, batch_id)
    assert summary["status"] == "done"
    assert (summary["rows_read"], summary["rows_loaded"]) == (100, 100)
    assert (summary["rows_rejected"], summary["rows_duplicate"]) == (0, 0)
    assert scalar(conn, "SELECT count(*) FROM staging_tripdata") == 0
    assert lake.list_files(LANDING) == []
    assert lake.exists(f"data/processed/tripdata/{batch_id}/trips.csv")


def test_ingesting_the_same_file_again_stores_nothing_new(
    conn: psycopg.Connection[Any], lake: Lake, runner: pipeline.SessionRunner
) -> None:
    lake.put(SAMPLE, LANDING)
    (first,) = pipeline.ingest(conn, lake, runner)
    lake.put(SAMPLE, LANDING)

    (second,) = pipeline.ingest(conn, lake, runner)

    assert scalar(conn, "SELECT count(*) FROM tripdata") == 100
    summary = batch_row(conn, second)
    assert (summary["rows_read"], summary["rows_loaded"], summary["rows_duplicate"]) == (
        100,
        0,
        100,
    )
    assert summary["files"][0]["same_as_file_id"] == batch_row(conn, first)["files"][0]["file_id"]
    assert scalar(conn, "SELECT count(*) FROM tripdata WHERE batch_id = %s", second) == 0


def test_rejects_bad_rows_with_reasons_and_counts_add_up(
    conn: psycopg.Connection[Any], lake: Lake, runner: pipeline.SessionRunner, tmp_path: Path
) -> None:
    good = "Prague,POINT (14.4 50.0),POINT (14.5 50.1),2018-05-28 09:03:40,funny_car"
    path = write(
        tmp_path / "mixed.csv",
        HEADER,
        good,
        good,
        "Prague,POINT (14.4 95.0),POINT (14.5 50.1),2018-05-28 09:03:40,funny_car",
        "Prague,POINT (14.4 50.0),POINT (14.5 50.1),2018-02-30 09:03:40,funny_car",
        "Prague,POINT (14.4 50.0),POINT (14.5 50.1),2018-05-28 09:03:40",
        "Turin,POINT (7.6 45.0),POINT (7.7 45.1),2018-05-21 02:54:04,baba_car",
    )
    lake.put(path, LANDING)

    (batch_id,) = pipeline.ingest(conn, lake, runner)

    summary = batch_row(conn, batch_id)
    assert counts(summary) == (6, 2, 3, 1)
    assert summary["rows_read"] == (
        summary["rows_loaded"] + summary["rows_rejected"] + summary["rows_duplicate"]
    )
    rejected = (
        pads.dataset(
            lake.full_path(pipeline.rejected_dir(batch_id)), filesystem=lake.fs, format="parquet"
        )
        .to_table()
        .to_pylist()
    )
    assert sorted((row["line"], row["reason"]) for row in rejected) == [
        (4, "origin_out_of_range"),
        (5, "bad_datetime"),
        (6, "wrong_field_count"),
    ]
    assert {row["raw"] for row in rejected if row["line"] == 6} == {
        "Prague,POINT (14.4 50.0),POINT (14.5 50.1),2018-05-28 09:03:40"
    }


def test_hostile_lines_are_rejected_and_the_good_ones_load(
    conn: psycopg.Connection[Any], lake: Lake, runner: pipeline.SessionRunner, tmp_path: Path
) -> None:
    # Before the contract rejected them, one NUL byte or one name too long for the btree
    # failed the whole batch at COPY or publish, good rows included.
    lines = [*hostile.GOOD, *hostile.HOSTILE.values()]
    path = tmp_path / "hostile.csv"
    path.write_bytes(hostile.file_bytes(lines))
    lake.put(path, LANDING)

    (batch_id,) = pipeline.ingest(conn, lake, runner)

    summary = batch_row(conn, batch_id)
    assert summary["status"] == "done"
    assert counts(summary) == (len(lines), len(hostile.GOOD), len(hostile.HOSTILE), 0)
    stored = {
        row[0]
        for row in conn.execute("SELECT region FROM tripdata WHERE batch_id = %s", (batch_id,))
    }
    conn.commit()
    expected = {check_line(item, hostile.POSITIONS) for item in hostile.GOOD}
    assert stored == {trip.region for trip in expected if isinstance(trip, Trip)}


def test_rejects_a_file_with_a_wrong_header_whole_and_loads_the_others(
    conn: psycopg.Connection[Any], lake: Lake, runner: pipeline.SessionRunner, tmp_path: Path
) -> None:
    bad = write(
        tmp_path / "bad.csv",
        "region,origin,destination_coord,datetime,datasource",
        "Prague,POINT (14.4 50.0),POINT (14.5 50.1),2018-05-28 09:03:40,funny_car",
    )
    lake.put(bad, LANDING)
    lake.put(SAMPLE, LANDING)

    (batch_id,) = pipeline.ingest(conn, lake, runner)

    files = {item["name"]: item for item in batch_row(conn, batch_id)["files"]}
    assert files["bad.csv"]["status"] == "rejected"
    assert "origin_coord" in files["bad.csv"]["error"]
    assert files["bad.csv"]["rows_loaded"] == 0
    # Its one data line is counted as rejected, and is in the rejected rows with the reason.
    assert files["bad.csv"]["rows_rejected"] == 1
    rejected = (
        pads.dataset(
            lake.full_path(pipeline.rejected_dir(batch_id)), filesystem=lake.fs, format="parquet"
        )
        .to_table()
        .to_pylist()
    )
    assert [(row["line"], row["reason"]) for row in rejected] == [(2, "wrong_header")]
    assert files["trips.csv"]["rows_loaded"] == 100
    assert scalar(conn, "SELECT count(*) FROM tripdata") == 100
    assert lake.exists(f"data/processed/tripdata/{batch_id}/bad.csv")


@pytest.mark.parametrize("crash_after", ["spark", "staging", "publish"])
def test_rerun_after_a_crash_stores_each_trip_once(
    crash_after: str,
    conn: psycopg.Connection[Any],
    lake: Lake,
    runner: pipeline.SessionRunner,
) -> None:
    batch = claim_sample(conn, lake)
    pipeline.process_batch(conn, lake, runner, batch.batch_id)
    if crash_after in ("staging", "publish"):
        load_staging(conn, lake, batch.batch_id, pipeline.batch_trusted_dir(conn, batch.batch_id))
    if crash_after == "publish":
        publish_batch(conn, batch.batch_id)

    assert pipeline.ingest(conn, lake, runner) == [batch.batch_id]
    assert pipeline.ingest(conn, lake, runner) == []

    assert scalar(conn, "SELECT count(*) FROM tripdata") == 100
    summary = batch_row(conn, batch.batch_id)
    assert (summary["status"], summary["rows_loaded"], summary["rows_duplicate"]) == (
        "done",
        100,
        0,
    )


def test_a_spark_run_that_outlives_its_try_never_reaches_the_batch(
    conn: psycopg.Connection[Any],
    lake: Lake,
    runner: pipeline.SessionRunner,
    settings: Settings,
) -> None:
    """A try killed while its job runs on (on the Connect server, or an orphaned
    spark-submit) is retried; the old run then finishes, late. Only the run the retry
    recorded is staged, published and copied, and the other one is dropped when done."""
    batch = claim_sample(conn, lake)
    stale = pipeline.new_attempt()
    runner.run(pipeline.build_job(conn, lake, batch.batch_id, attempt=stale))
    pipeline.process_batch(conn, lake, runner, batch.batch_id)
    recorded = ingestions.get_batch(conn, batch.batch_id).spark_attempt
    assert recorded is not None and recorded != stale
    # The stale run writes its whole output once more after the retry recorded its own.
    runner.run(pipeline.build_job(conn, lake, batch.batch_id, attempt=stale))
    assert lake.glob(f"{pipeline.trusted_dir(batch.batch_id)}/attempt=*/_report/*.json")

    copy = ServingCopy.from_settings(settings)
    assert pipeline.ingest(conn, lake, runner, serving=copy) == [batch.batch_id]

    assert scalar(conn, "SELECT count(*) FROM tripdata") == 100
    summary = batch_row(conn, batch.batch_id)
    assert (summary["status"], summary["rows_loaded"], summary["rows_duplicate"]) == (
        "done",
        100,
        0,
    )
    assert [segment.rows for segment in copy.segments()] == [100]
    for directory in (pipeline.trusted_dir, pipeline.rejected_dir):
        runs = lake.glob(f"{directory(batch.batch_id)}/attempt=*")
        assert [path.rsplit("/", 1)[1] for path in runs] == [f"attempt={recorded}"]


def test_reloads_staging_lost_by_a_server_crash(
    conn: psycopg.Connection[Any], lake: Lake, runner: pipeline.SessionRunner
) -> None:
    batch = claim_sample(conn, lake)
    pipeline.process_batch(conn, lake, runner, batch.batch_id)
    load_staging(conn, lake, batch.batch_id, pipeline.batch_trusted_dir(conn, batch.batch_id))
    # What crash recovery does to an unlogged table.
    conn.execute("TRUNCATE staging_tripdata")
    conn.commit()

    pipeline.ingest(conn, lake, runner)

    assert scalar(conn, "SELECT count(*) FROM tripdata") == 100


def test_a_file_is_claimed_by_one_batch_only(conn: psycopg.Connection[Any], lake: Lake) -> None:
    lake.put(SAMPLE, LANDING)

    first = ingestions.claim_batch(conn, lake)
    second = ingestions.claim_batch(conn, lake)

    assert first is not None and len(first.files) == 1
    assert second is None


def test_ignores_files_still_being_written(conn: psycopg.Connection[Any], lake: Lake) -> None:
    lake.write_bytes(f"{LANDING}/trips.csv._COPYING_", SAMPLE.read_bytes())
    lake.write_bytes(f"{LANDING}/.hidden.csv", SAMPLE.read_bytes())
    lake.write_bytes(f"{LANDING}/upload.tmp", SAMPLE.read_bytes())

    assert ingestions.claim_batch(conn, lake) is None


def test_pushes_each_status_change_to_listeners(
    conn: psycopg.Connection[Any],
    lake: Lake,
    runner: pipeline.SessionRunner,
    database_url: str,
) -> None:
    with connect(database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {ingestions.CHANNEL}")
        lake.put(SAMPLE, LANDING)
        pipeline.ingest(conn, lake, runner)
        statuses = [
            json.loads(note.payload)["status"]
            for note in listener.notifies(timeout=2, stop_after=5)
        ]
    assert statuses == ["claimed", "processed", "staged", "published", "done"]


def test_follower_reports_the_batch_of_newly_added_files_when_done(
    conn: psycopg.Connection[Any],
    lake: Lake,
    runner: pipeline.SessionRunner,
    database_url: str,
) -> None:
    events: list[dict[str, Any]] = []
    with ingestions.BatchFollower(database_url) as follower:
        added = lake.put(SAMPLE, LANDING)
        # Ingest while the follower waits, as the DAG would in another process.
        worker = threading.Thread(target=pipeline.ingest, args=(conn, lake, runner))
        worker.start()
        try:
            (summary,) = follower.follow([added], timeout=120, on_event=events.append)
        finally:
            worker.join()

    assert (summary["status"], summary["rows_loaded"]) == ("done", 100)
    assert [event["status"] for event in events] == [
        "claimed",
        "processed",
        "staged",
        "published",
        "done",
    ]


def test_follower_times_out_when_nothing_ingests(lake: Lake, database_url: str) -> None:
    with ingestions.BatchFollower(database_url) as follower:
        added = lake.put(SAMPLE, LANDING)
        with pytest.raises(TimeoutError, match="not loaded"):
            follower.follow([added], timeout=0.5)


def test_a_batch_that_keeps_failing_is_set_aside_and_newer_files_still_load(
    conn: psycopg.Connection[Any], lake: Lake, runner: pipeline.SessionRunner
) -> None:
    batch = claim_sample(conn, lake)
    # The claimed file turns into a directory: a real Spark job over it fails. (On S3, where
    # a directory is a prefix, an empty object under the file's name makes it one.)
    landing = batch.files[0].landing_path
    lake.fs.rm(lake.full_path(landing))
    if lake.is_object_store:
        lake.write_bytes(f"{landing}/part-0", b"")
    else:
        lake.makedirs(landing)
    for _ in range(3):
        with pytest.raises(ValueError, match=r"Spark did not read|none of the job's files"):
            pipeline.ingest(conn, lake, runner, max_attempts=3)
    lake.put(SAMPLE, LANDING, name="trips_again.csv")

    (newer,) = pipeline.ingest(conn, lake, runner, max_attempts=3)

    failed = batch_row(conn, batch.batch_id)
    assert (failed["status"], failed["attempts"]) == ("failed", 3)
    assert failed["error"].startswith("spark: ")
    assert failed["files"][0]["processed_path"] == f"{pipeline.FAILED}/{batch.batch_id}/trips.csv"
    assert lake.exists(f"{pipeline.FAILED}/{batch.batch_id}/trips.csv")
    assert not lake.exists(landing)
    assert batch_row(conn, newer)["rows_loaded"] == 100


def test_a_claimed_file_deleted_from_the_lake_fails_its_batch_and_blocks_nothing(
    conn: psycopg.Connection[Any], runner: pipeline.SessionRunner, settings: Settings
) -> None:
    lake = Lake(settings.lake_root)
    batch = claim_sample(conn, lake)
    lake.fs.rm(lake.full_path(batch.files[0].landing_path))
    for _ in range(2):
        with pytest.raises(Exception, match=r"trips\.csv"):
            pipeline.ingest(conn, lake, runner, max_attempts=2)
    lake.put(SAMPLE, LANDING, name="trips_again.csv")

    (newer,) = pipeline.ingest(conn, lake, runner, max_attempts=2)

    failed = batch_row(conn, batch.batch_id)
    assert (failed["status"], failed["attempts"]) == ("failed", 2)
    assert failed["files"][0]["processed_path"] is None
    assert batch_row(conn, newer)["rows_loaded"] == 100
    with pytest.raises(FileNotFoundError, match="cannot run Spark again"):
        pipeline.requeue_failed(conn, lake, batch.batch_id)


def test_a_batch_failing_at_publish_leaves_nothing_in_staging(
    conn: psycopg.Connection[Any], lake: Lake, runner: pipeline.SessionRunner
) -> None:
    # A constraint the sample breaks makes the real publish statement fail.
    conn.execute("ALTER TABLE tripdata ADD CONSTRAINT no_prague CHECK (region <> 'Prague')")
    conn.commit()
    lake.put(SAMPLE, LANDING)
    with pytest.raises(psycopg.errors.CheckViolation):
        pipeline.ingest(conn, lake, runner, max_attempts=1)
    (batch_id,) = conn.execute("SELECT batch_id FROM ingestion_batch").fetchone() or ()
    failed = batch_row(conn, batch_id)
    staged = conn.execute("SELECT count(*) FROM staging_tripdata").fetchone()
    stored = conn.execute("SELECT count(*) FROM tripdata").fetchone()
    assert (failed["status"], failed["rows_staged"]) == ("failed", 100)
    assert failed["error"].startswith("publish: ")
    assert staged == (0,)
    assert stored == (0,)


def test_counts_equal_what_the_generator_put_in_generated_files(
    conn: psycopg.Connection[Any],
    settings: Settings,
    runner: pipeline.SessionRunner,
    tmp_path: Path,
) -> None:
    generated = generate_trips(
        30_000, tmp_path / "generated", files=3, seed=5, invalid_rate=0.02, duplicate_rate=0.03
    )
    lake = Lake(settings.lake_root)
    for item in generated.files:
        lake.put(Path(item.path), LANDING)

    (batch_id,) = pipeline.ingest(conn, lake, runner)

    assert counts(batch_row(conn, batch_id)) == (
        generated.rows,
        generated.distinct_trips,
        generated.invalid_rows,
        generated.duplicates,
    )
    rejected = (
        pads.dataset(
            lake.full_path(pipeline.rejected_dir(batch_id)), filesystem=lake.fs, format="parquet"
        )
        .to_table(columns=["reason"])
        .column("reason")
        .value_counts()
        .to_pylist()
    )
    assert {item["values"]: item["counts"] for item in rejected} == {
        reason.value: count for reason, count in generated.invalid.items() if count
    }


def test_stores_each_week_of_a_batch_in_place_order(
    conn: psycopg.Connection[Any],
    settings: Settings,
    runner: pipeline.SessionRunner,
    tmp_path: Path,
) -> None:
    generated = generate_trips(6_000, tmp_path / "generated", files=2, seed=9, duplicate_rate=0.02)
    lake = Lake(settings.lake_root)
    for item in generated.files:
        lake.put(Path(item.path), LANDING)

    pipeline.ingest(conn, lake, runner)

    # Publish takes the staged rows as the Spark job ordered them: within each partition,
    # the heap runs by region, then latitude band, then longitude. Not every row: COPY and
    # INSERT put a short row into an earlier page's leftover space when it fits there (1 of
    # 6,000 here); in random order half the neighbours would be out of order.
    partitions, out_of_order = conn.execute(
        """
        SELECT count(DISTINCT part), count(*) FILTER (WHERE (region, band, lon) < (r0, b0, l0))
        FROM (
            SELECT tableoid AS part, region COLLATE "C" AS region,
                floor(ST_Y(origin_coord) * 200) AS band, ST_X(origin_coord) AS lon,
                lag(region COLLATE "C") OVER heap AS r0,
                lag(floor(ST_Y(origin_coord) * 200)) OVER heap AS b0,
                lag(ST_X(origin_coord)) OVER heap AS l0
            FROM tripdata
            WINDOW heap AS (PARTITION BY tableoid ORDER BY ctid)
        ) rows
        """
    ).fetchone()
    assert partitions > 40
    assert out_of_order < 60


def test_bad_input_suite_rejects_what_it_must_and_loads_every_good_row(
    conn: psycopg.Connection[Any], lake: Lake, runner: pipeline.SessionRunner, tmp_path: Path
) -> None:
    # Stored before: the suite must neither lose nor double any of it.
    lake.put(SAMPLE, LANDING)
    (first,) = pipeline.ingest(conn, lake, runner)
    sample_keys = {
        row[0]
        for row in conn.execute("SELECT trip_key FROM tripdata WHERE batch_id = %s", (first,))
    }
    conn.commit()
    assert len(badinput.CASES) >= 40
    for name, content in badinput.CASES.items():
        (tmp_path / name).write_bytes(content)
        lake.put(tmp_path / name, LANDING)

    (batch_id,) = pipeline.ingest(conn, lake, runner)

    summary = batch_row(conn, batch_id)
    assert summary["status"] == "done"
    files = {item["name"]: item for item in summary["files"]}
    rejected: dict[int, dict[int, str]] = {}
    for row in (
        pads.dataset(
            lake.full_path(pipeline.rejected_dir(batch_id)), filesystem=lake.fs, format="parquet"
        )
        .to_table()
        .to_pylist()
    ):
        rejected.setdefault(row["file_id"], {})[row["line"]] = row["reason"]
    every_trip: set[tuple[object, ...]] = set()
    for name, content in badinput.CASES.items():
        want, got = badinput.expected(content), files[name]
        assert got["rows_read"] == want.rows_read, name
        assert got["rows_rejected"] == len(want.rejected), name
        assert got["rows_loaded"] + got["rows_duplicate"] == len(want.trips), name
        assert rejected.get(got["file_id"], {}) == want.rejected, name
        assert (got["status"] == "rejected") == want.header_error, name
        every_trip |= {astuple(trip) for trip in want.trips}
    stored = {
        astuple(Trip(*row))
        for row in conn.execute(
            "SELECT region, ST_X(origin_coord), ST_Y(origin_coord), ST_X(destination_coord),"
            " ST_Y(destination_coord), datetime, datasource FROM tripdata"
        )
    }
    keys_after = {row[0] for row in conn.execute("SELECT trip_key FROM tripdata")}
    conn.commit()
    assert stored == every_trip | {astuple(trip) for trip in TRIPS_OF_SAMPLE}
    assert scalar(conn, "SELECT count(*) FROM tripdata") == len(stored)
    assert sample_keys <= keys_after
    (again,) = [item for name, item in files.items() if name.endswith("-sample-again.csv")]
    assert (again["rows_loaded"], again["rows_duplicate"]) == (0, 100)
