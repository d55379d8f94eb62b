"""The serving copy against tripdata: after publishes, a failed publish, a crash between
the two stores, a rebuild, a lost copy; and readers while a publish is under way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import SAMPLE
from tripflow import answers, pipeline
from tripflow.api import create_app
from tripflow.api.database import EXTENSION_KEY
from tripflow.config import Settings
from tripflow.generate import generate_trips
from tripflow.lake import LANDING, Lake
from tripflow.serving import maintenance
from tripflow.serving.copy import ServingCopy, batch_segment_name
from tripflow.serving.engine import Engine
from tripflow.warehouse import ingestions, queries
from tripflow.warehouse.database import connect
from tripflow.warehouse.ingestions import Status
from tripflow.weeks import AreaQuery, BBox, Match

ROOT = Path(__file__).resolve().parents[2]
# Boxes the generated trips cut: Prague's centre, and one across Turin's western edge.
QUESTIONS = [
    AreaQuery(bbox=BBox(14.38, 50.04, 14.47, 50.11)),
    AreaQuery(bbox=BBox(14.38, 50.04, 14.47, 50.11), match=Match.EITHER),
    AreaQuery(bbox=BBox(7.55, 45.0, 7.66, 45.1), match=Match.DESTINATION),
    AreaQuery(bbox=BBox(14.0, 49.0, 15.0, 51.0), match=Match.ORIGIN, datasource="funny_car"),
    AreaQuery(region="Prague", start=datetime(2018, 5, 9, 13)),
]


@pytest.fixture
def serving(tmp_path: Path) -> answers.Serving:
    return answers.Serving(ServingCopy(tmp_path / "serving"), Engine())


def land_generated(lake: Lake, directory: Path, rows: int, seed: int) -> None:
    generated = generate_trips(rows, directory, files=1, seed=seed, duplicate_rate=0.02)
    for item in generated.files:
        lake.put(Path(item.path), LANDING, name=f"{seed}-{Path(item.path).name}")


def postgis_answers(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    found = [answers.weekly_average(conn, query).to_json() for query in QUESTIONS]
    conn.commit()
    return found


def copy_answers(conn: psycopg.Connection[Any], serving: answers.Serving) -> list[dict[str, Any]]:
    """Answers that must come from the copy: a fallback to PostGIS fails the test."""
    original = queries.count_groups

    def not_postgis(*_: object) -> None:
        raise AssertionError("answered from PostGIS, not from the serving copy")

    queries.count_groups = not_postgis  # type: ignore[assignment]
    try:
        found = [
            answers.weekly_average(conn, query, serving=serving).to_json() for query in QUESTIONS
        ]
    finally:
        queries.count_groups = original
    conn.commit()
    return found


def assert_copy_equals_tripdata(conn: psycopg.Connection[Any], serving: answers.Serving) -> None:
    result = maintenance.check(conn, serving.copy, serving.engine)
    conn.commit()
    assert result.missing_batches == []
    assert result.differences == []
    assert copy_answers(conn, serving) == postgis_answers(conn)


@pytest.mark.parametrize("lake_kind", ["file", "hdfs"])
def test_each_publish_writes_its_batch_and_the_copy_equals_tripdata(
    conn: psycopg.Connection[Any],
    settings: Settings,
    runner: pipeline.SessionRunner,
    serving: answers.Serving,
    tmp_path: Path,
    lake_kind: str,
    request: pytest.FixtureRequest,
) -> None:
    if lake_kind == "file":
        lake = Lake(settings.lake_root)
    else:
        cluster = request.getfixturevalue("hdfs")
        lake = Lake(
            cluster.url(f"/tests/{uuid.uuid4().hex}"),
            port=cluster.settings.hdfs_http_port,
            user=cluster.user,
        )
    land_generated(lake, tmp_path / "one", 4000, seed=1)
    (first,) = pipeline.ingest(conn, lake, runner, serving=serving.copy)
    # The same trips again plus new ones: the copy must leave out the ones already stored.
    land_generated(lake, tmp_path / "two", 4000, seed=1)
    land_generated(lake, tmp_path / "three", 1000, seed=2)
    (second,) = pipeline.ingest(conn, lake, runner, serving=serving.copy)
    names = sorted(segment.name for segment in serving.copy.segments())
    assert names == [batch_segment_name(first), batch_segment_name(second)]
    assert ingestions.batch_summary(conn, second)["rows_duplicate"] >= 4000 * 0.98 - 1
    assert_copy_equals_tripdata(conn, serving)


def test_a_failed_publish_leaves_the_copy_at_the_published_state(
    conn: psycopg.Connection[Any],
    settings: Settings,
    runner: pipeline.SessionRunner,
    serving: answers.Serving,
    tmp_path: Path,
) -> None:
    lake = Lake(settings.lake_root)
    land_generated(lake, tmp_path / "one", 2000, seed=3)
    (first,) = pipeline.ingest(conn, lake, runner, serving=serving.copy)
    before = copy_answers(conn, serving)
    # The second publish fails at its very end, after its segment was written.
    conn.execute(
        sql.SQL(
            "ALTER TABLE ingestion_batch ADD CONSTRAINT one_batch_only"
            " CHECK (status NOT IN ('published', 'done') OR batch_id = {})"
        ).format(sql.Literal(first))
    )
    conn.commit()
    land_generated(lake, tmp_path / "two", 2000, seed=4)
    with pytest.raises(psycopg.errors.CheckViolation):
        pipeline.ingest(conn, lake, runner, max_attempts=1, serving=serving.copy)
    conn.rollback()
    assert copy_answers(conn, serving) == before
    assert_copy_equals_tripdata(conn, serving)
    # The failed batch's segment goes with the next sync.
    maintenance.sync(conn, serving.copy)
    assert [segment.name for segment in serving.copy.segments()] == [batch_segment_name(first)]


PUBLISH_SCRIPT = """
import sys
from pathlib import Path
from tripflow.lake import Lake
from tripflow.serving.copy import ServingCopy
from tripflow.serving.maintenance import BatchWriter
from tripflow.warehouse.database import connect
from tripflow.warehouse.publish import publish_batch

url, lake_url, serving_dir, batch_id = sys.argv[1:]
with connect(url) as conn:
    writer = BatchWriter(ServingCopy(Path(serving_dir)), Lake(lake_url))
    publish_batch(conn, int(batch_id), writer)
"""


def waiting_backend(conn: psycopg.Connection[Any], table: str) -> int | None:
    row = conn.execute(
        "SELECT pid FROM pg_locks WHERE relation = %s::regclass AND NOT granted", (table,)
    ).fetchone()
    conn.commit()
    return None if row is None else int(row[0])


def test_a_crash_between_the_two_stores_leaves_the_previous_state_until_the_next_ingest(
    conn: psycopg.Connection[Any],
    database_url: str,
    settings: Settings,
    runner: pipeline.SessionRunner,
    serving: answers.Serving,
    tmp_path: Path,
) -> None:
    lake = Lake(settings.lake_root)
    land_generated(lake, tmp_path / "one", 2000, seed=5)
    pipeline.ingest(conn, lake, runner, serving=serving.copy)
    before = copy_answers(conn, serving)
    land_generated(lake, tmp_path / "two", 3000, seed=6)
    batch_id = pipeline.claim_or_resume(conn, lake)
    assert batch_id is not None
    pipeline.run_batch(conn, lake, runner, batch_id, until=Status.STAGED)

    # Hold staging so that the publisher stops right after writing its segment, before it
    # clears staging and commits; then kill it there.
    with connect(database_url) as holder:
        holder.execute("LOCK TABLE staging_tripdata IN SHARE MODE")
        publisher = subprocess.Popen(
            [sys.executable, "-c", PUBLISH_SCRIPT, database_url, lake.url,
             str(serving.copy.directory), str(batch_id)],
            cwd=ROOT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            backend = None
            while backend is None and time.monotonic() < deadline:
                assert publisher.poll() is None, "the publisher ended before the lock"
                backend = waiting_backend(conn, "staging_tripdata")
                time.sleep(0.2)
            assert backend is not None
            segment = serving.copy.directory / f"{batch_segment_name(batch_id)}.json"
            assert segment.exists()
            # Between the two stores: the new segment is on disk, the batch is not published.
            assert copy_answers(conn, serving) == before
        finally:
            os.kill(publisher.pid, signal.SIGKILL)
            publisher.wait()
        conn.execute("SELECT pg_terminate_backend(%s)", (backend,))
        conn.commit()
    assert ingestions.get_batch(conn, batch_id).status is Status.STAGED
    assert copy_answers(conn, serving) == before
    assert_copy_equals_tripdata(conn, serving)

    (resumed,) = pipeline.ingest(conn, lake, runner, serving=serving.copy)
    assert resumed == batch_id
    assert ingestions.get_batch(conn, batch_id).status is Status.DONE
    assert copy_answers(conn, serving) != before
    assert_copy_equals_tripdata(conn, serving)


def test_a_lost_copy_answers_from_postgis_until_sync_and_rebuild_replaces_it(
    conn: psycopg.Connection[Any],
    settings: Settings,
    runner: pipeline.SessionRunner,
    serving: answers.Serving,
    tmp_path: Path,
) -> None:
    lake = Lake(settings.lake_root)
    land_generated(lake, tmp_path / "one", 2000, seed=7)
    pipeline.ingest(conn, lake, runner)  # published without a copy
    expected = postgis_answers(conn)
    assert serving.copy.cover(maintenance.published_batches(conn)) is None
    conn.commit()
    fallback = [
        answers.weekly_average(conn, query, serving=serving).to_json() for query in QUESTIONS
    ]
    conn.commit()
    assert fallback == expected
    assert maintenance.check(conn, serving.copy, serving.engine).missing_batches == [1]
    conn.commit()

    assert maintenance.sync(conn, serving.copy) == [1]
    assert_copy_equals_tripdata(conn, serving)

    stored = conn.execute("SELECT count(*) FROM tripdata").fetchone()
    conn.commit()
    assert stored is not None
    assert maintenance.rebuild(conn, serving.copy) == stored[0]
    (segment,) = serving.copy.segments()
    assert segment.name.startswith("rebuild-")
    assert_copy_equals_tripdata(conn, serving)


def run_check(settings: Settings) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "TRIPFLOW_HOME": str(settings.home_dir),
        "TRIPFLOW_DATABASE_URL": settings.database_dsn,
        "TRIPFLOW_SERVING_DIR": str(settings.serving_dir_path),
    }
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "tripflow"), "serving", "check"],
        env=environment,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_serving_check_exits_1_when_the_copy_differs(
    conn: psycopg.Connection[Any],
    settings: Settings,
    runner: pipeline.SessionRunner,
    tmp_path: Path,
) -> None:
    copy = ServingCopy.from_settings(settings)
    lake = Lake(settings.lake_root)
    land_generated(lake, tmp_path / "one", 1000, seed=8)
    (batch_id,) = pipeline.ingest(conn, lake, runner, serving=copy)
    assert run_check(settings).returncode == 0
    # The batch's segment replaced by one that lacks the trips of one region.
    copy.remove(copy.segments())
    copy.write_query(
        conn,
        "tampered",
        [batch_id],
        sql.SQL(
            "SELECT region, datasource, ST_X(origin_coord), ST_Y(origin_coord),"
            " ST_X(destination_coord), ST_Y(destination_coord), datetime"
            " FROM tripdata WHERE region <> 'Turin'"
        ),
        {},
    )
    conn.commit()
    result = run_check(settings)
    assert result.returncode == 1
    assert "differs from tripdata" in result.stderr
    assert "Turin" in result.stderr


def test_the_api_answers_from_the_copy_while_a_publish_holds_tripdata(
    conn: psycopg.Connection[Any],
    settings: Settings,
    runner: pipeline.SessionRunner,
    database_url: str,
    tmp_path: Path,
) -> None:
    lake = Lake(settings.lake_root)
    lake.put(SAMPLE, LANDING)
    land_generated(lake, tmp_path / "one", 2000, seed=9)
    pipeline.ingest(conn, lake, runner, serving=ServingCopy.from_settings(settings))
    expected = answers.weekly_average(conn, QUESTIONS[0]).to_json()
    conn.commit()
    app = create_app(settings.model_copy(update={"api_answer_cache": 0}))
    client = app.test_client()
    url = "/weekly-average?bbox=14.38,50.04,14.47,50.11"
    try:
        with connect(database_url) as holder:
            # More than any publish holds now (the old unpartitioned rebuild held this).
            holder.execute("LOCK TABLE tripdata IN ACCESS EXCLUSIVE MODE")
            response = client.get(url)
    finally:
        app.extensions[EXTENSION_KEY].close()
    assert response.status_code == 200
    assert response.get_json()["trips"] == expected["trips"] > 0
    assert response.get_json()["series"] == expected["series"]


def test_a_reader_during_publishes_sees_whole_batches(
    conn: psycopg.Connection[Any],
    database_url: str,
    settings: Settings,
    runner: pipeline.SessionRunner,
    serving: answers.Serving,
    tmp_path: Path,
) -> None:
    lake = Lake(settings.lake_root)
    query = AreaQuery(bbox=BBox(14.0, 49.0, 15.0, 51.0), match=Match.ORIGIN)
    seen: list[int] = []
    stop = threading.Event()

    def read() -> None:
        with connect(database_url) as reader:
            while not stop.is_set():
                seen.append(answers.weekly_average(reader, query, serving=serving).trips)
                reader.commit()

    totals = [0]
    thread = threading.Thread(target=read)
    thread.start()
    try:
        for seed in (10, 11, 12):
            land_generated(lake, tmp_path / str(seed), 1500, seed=seed)
            pipeline.ingest(conn, lake, runner, serving=serving.copy)
            totals.append(answers.weekly_average(conn, query).trips)
            conn.commit()
    finally:
        stop.set()
        thread.join()
    assert len(seen) > 3
    assert set(seen) <= set(totals)


def test_many_batches_are_merged_into_fewer_segments_with_the_same_answers(
    conn: psycopg.Connection[Any],
    settings: Settings,
    runner: pipeline.SessionRunner,
    tmp_path: Path,
) -> None:
    lake = Lake(settings.lake_root)
    copy = ServingCopy(tmp_path / "serving", max_segments=2)
    serving = answers.Serving(copy, Engine())
    for seed in range(20, 24):
        land_generated(lake, tmp_path / str(seed), 600, seed=seed)
        pipeline.ingest(conn, lake, runner, serving=copy)
    in_use = copy.cover(maintenance.published_batches(conn))
    conn.commit()
    assert in_use is not None
    assert len(in_use) <= 3
    assert any(segment.name.startswith("merge-") for segment in in_use)
    assert sorted(batch for segment in in_use for batch in segment.batches) == [1, 2, 3, 4]
    assert_copy_equals_tripdata(conn, serving)
