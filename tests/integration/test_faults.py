"""Faults met with nothing lost: PostgreSQL restarting under a stream of API questions, and
the database's disk filling up halfway through a publish."""

from __future__ import annotations

import http.client
import json
import os
import pwd
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from itertools import cycle
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tests import reference
from tests.conftest import free_port
from tests.integration.trips import sample, stage_and_publish
from tripflow import pipeline
from tripflow.api import DEFAULT_POOL_TIMEOUT
from tripflow.config import Settings, SparkRunnerMode
from tripflow.generate import Order, generate_trips
from tripflow.lake import LANDING, Lake
from tripflow.records import Trip
from tripflow.services import stack
from tripflow.services.postgres import ManagedPostgres
from tripflow.serving.copy import ServingCopy
from tripflow.warehouse import ingestions
from tripflow.warehouse.database import connect, migrate
from tripflow.warehouse.ingestions import Status
from tripflow.warehouse.publish import DiskBudget, NotEnoughDisk

# --- PostgreSQL restarting while the API answers ----------------------------------------

# Every one of them reads PostgreSQL on every request: /weekly-average reads the data
# version before it looks in its answer cache, /regions and /ingestions query tables, and
# /health runs postgis_version().
QUESTIONS = (
    "/weekly-average?bbox=14.3,49.95,14.6,50.15",
    "/regions",
    "/ingestions",
    "/health",
)
# Longer than the API's wait for a pooled connection, so a question asked while the server
# is down gets its 503 before the server is back.
DOWN_SECONDS = DEFAULT_POOL_TIMEOUT + 3
# Liveness bounds only: how long the API may take to answer 200 again, and the whole loop.
RECOVERY_BOUND = 60.0
LOOP_BOUND = 120.0
DATABASE_UNAVAILABLE = "urn:tripflow:problem:database-unavailable"


@dataclass(frozen=True)
class Answer:
    """One request of the loop as the client saw it."""

    path: str
    started: float
    ended: float
    status: int  # 0: no HTTP answer at all (connection refused, reset, timed out)
    content_type: str
    body: Any
    error: str = ""


def ask(port: int, path: str) -> Answer:
    """GET one path on a new connection; a broken exchange is an answer with status 0."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        raw = response.read()
        content_type = response.getheader("Content-Type", "")
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        return Answer(path, started, time.monotonic(), response.status, content_type, body)
    except (OSError, http.client.HTTPException) as error:
        return Answer(path, started, time.monotonic(), 0, "", None, repr(error))
    finally:
        connection.close()


@pytest.fixture
def own_cluster(test_home: Path) -> Iterator[ManagedPostgres]:
    """A small cluster of the test's own: stopping it leaves the run's cluster alone."""
    settings = Settings(_env_file=None, home=test_home / "faults", database_port=free_port())
    cluster = ManagedPostgres(settings)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def served_api(test_home: Path, own_cluster: ManagedPostgres) -> Iterator[Settings]:
    """The API under gunicorn, as `tripflow up` runs it, over a few thousand trips."""
    url = own_cluster.url()
    migrate(url)
    with closing(connect(url)) as conn:
        stage_and_publish(conn, sample(2000, seed=71))
        stage_and_publish(conn, sample(500, seed=72))
    settings = Settings(
        _env_file=None,
        home=test_home / "faults" / "api",
        database_url=url,
        api_port=free_port(),
        api_workers=2,
        api_threads=2,
        # No Spark Connect server: the stack is the API alone.
        spark_runner=SparkRunnerMode.SUBMIT,
    )
    try:
        stack.up(settings, with_airflow=False, timeout=60)
        yield settings
    finally:
        stack.stop_supervisor(settings)


def ask_in_a_loop(port: int, answers: list[Answer], stop: threading.Event) -> None:
    """Ask the questions in turn until told to stop, for LOOP_BOUND seconds at most."""
    deadline = time.monotonic() + LOOP_BOUND
    for path in cycle(QUESTIONS):
        if stop.is_set() or time.monotonic() > deadline:
            return
        answers.append(ask(port, path))


def all_answered_since(answers: list[Answer], moment: float) -> bool:
    """Tell whether every question got a 200 to a request sent after `moment`."""
    answered = {item.path for item in answers if item.started > moment and item.status == 200}
    return answered == set(QUESTIONS)


def test_the_api_answers_503_while_postgresql_restarts_then_the_same_answers_as_before(
    own_cluster: ManagedPostgres, served_api: Settings
) -> None:
    port = served_api.api_port
    before = {path: ask(port, path) for path in QUESTIONS}
    assert {path: item.status for path, item in before.items()} == dict.fromkeys(QUESTIONS, 200)
    assert before[QUESTIONS[0]].body["trips"] > 0

    answers: list[Answer] = []
    stop = threading.Event()
    client = threading.Thread(target=ask_in_a_loop, args=(port, answers, stop))
    client.start()
    try:
        wait_until(lambda: all_answered_since(answers, 0.0), 30, "a first round of answers")
        stopping_at = time.monotonic()
        own_cluster.stop()
        down_at = time.monotonic()
        time.sleep(DOWN_SECONDS)
        own_cluster.start()
        back_at = time.monotonic()
        wait_until(
            lambda: all_answered_since(answers, back_at), RECOVERY_BOUND, "200s after the restart"
        )
        # One more round, to see the answers stay 200.
        settled_at = time.monotonic()
        wait_until(lambda: all_answered_since(answers, settled_at), 30, "a last round")
    finally:
        stop.set()
        client.join(60)
    assert not client.is_alive()

    broken = [item for item in answers if item.status not in (200, 503)]
    assert not broken, broken
    refusals = [item for item in answers if item.status == 503]
    for item in refusals:
        assert item.content_type == "application/problem+json", item
        assert item.body["type"] == DATABASE_UNAVAILABLE, item
        assert item.body["status"] == 503, item
    assert refusals, "no 503 while PostgreSQL was down"
    # Refused only because of the fault, and from the last refusal on, every answer is 200
    # and equal to the one before the fault.
    assert min(item.ended for item in refusals) > stopping_at
    last_refusal = max(item.ended for item in refusals)
    assert last_refusal - back_at < RECOVERY_BOUND
    after = [item for item in answers if item.started > last_refusal]
    assert {item.path for item in after} == set(QUESTIONS)
    for item in after:
        assert (item.path, item.status, item.body) == (item.path, 200, before[item.path].body)

    first_200 = min(item.ended for item in answers if item.status == 200 and item.ended > back_at)
    print(
        f"\nPostgreSQL down {back_at - down_at:.1f} s (stop took {down_at - stopping_at:.1f} s): "
        f"{len(answers)} answers, {len(refusals)} of them 503; first 200 "
        f"{first_200 - back_at:.2f} s after the server was back"
    )


def wait_until(check: Any, seconds: float, what: str) -> None:
    """Poll `check` every 0.1 s; fail the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {seconds:.0f} s")
        time.sleep(0.1)


# --- The disk filling up during a publish -----------------------------------------------

# The tmpfs the second batch's week partitions and their indexes go to: a few thousand
# trips fill it (about 300 bytes each); the second batch has ten times more.
SMALL_DISK = "2M"
ROOM = "256M"
FIRST_ROWS = 2_000
SECOND_ROWS = 20_000


@dataclass(frozen=True)
class SmallDisk:
    """A tmpfs mounted for one test, with a tablespace of the session cluster on it."""

    mount_point: Path
    tablespace: str

    def grow(self, size: str) -> None:
        """Give the disk more room, as a freed disk would have."""
        run_command(["mount", "-o", f"remount,size={size}", str(self.mount_point)])


def run_command(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a command; fail the test with its output if it fails."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(command)}: {result.stderr.strip()}"
    return result


def database_name(url: str) -> str:
    """Return the database a URL names."""
    return str(conninfo_to_dict(url)["dbname"])


@pytest.fixture
def small_disk(
    test_home: Path, postgres_cluster: ManagedPostgres, database_url: str
) -> Iterator[SmallDisk]:
    """A small tmpfs owned by `postgres`, with a tablespace on it; dropped and unmounted
    afterwards, together with the test's database (which may hold tables there)."""
    if os.geteuid() != 0:
        pytest.skip(
            "mounting a tmpfs needs root; test_partitions.py checks the free-space check "
            "that stops a batch the disk cannot take"
        )
    owner = pwd.getpwnam("postgres")
    mount_point = test_home / f"small-disk-{os.getpid()}"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o",
         f"size={SMALL_DISK},mode=0700,uid={owner.pw_uid},gid={owner.pw_gid}",
         "tmpfs", str(mount_point)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        mount_point.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    tablespace = f"small_disk_{os.getpid()}"
    admin_url = postgres_cluster.url("postgres")
    try:
        try:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(
                        sql.Identifier(tablespace), sql.Literal(str(mount_point))
                    )
                )
            yield SmallDisk(mount_point, tablespace)
        finally:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(database_name(database_url))
                    )
                )
                admin.execute(
                    sql.SQL("DROP TABLESPACE IF EXISTS {}").format(sql.Identifier(tablespace))
                )
    finally:
        run_command(["umount", str(mount_point)])
        mount_point.rmdir()


def stored_rows(conn: psycopg.Connection[Any]) -> set[tuple[Any, ...]]:
    """Return every stored trip as a whole row, the time it was loaded included."""
    rows = conn.execute(
        "SELECT trip_key, region, ST_AsText(origin_coord), ST_AsText(destination_coord),"
        " datetime, datasource, batch_id, file_id, loaded_at FROM tripdata"
    ).fetchall()
    conn.commit()
    return set(rows)


def stored_trips(conn: psycopg.Connection[Any]) -> Counter[Trip]:
    """Return the stored trips as the data contract reads them, counted."""
    rows = conn.execute(
        "SELECT region, ST_X(origin_coord), ST_Y(origin_coord), ST_X(destination_coord),"
        " ST_Y(destination_coord), datetime, datasource FROM tripdata"
    ).fetchall()
    conn.commit()
    return Counter(Trip(*row) for row in rows)


def file_trips(path: Path) -> set[Trip]:
    """Return the distinct valid trips of a file, read in plain Python."""
    return {row.trip for row in reference.read_trips(path)}


def newest_batch(conn: psycopg.Connection[Any]) -> int:
    """Return the id of the batch claimed last."""
    row = conn.execute("SELECT max(batch_id) FROM ingestion_batch").fetchone()
    conn.commit()
    assert row is not None
    return int(row[0])


def tablespace_tables(conn: psycopg.Connection[Any], tablespace: str) -> list[str]:
    """Return the tables and indexes of this database stored in a tablespace."""
    rows = conn.execute(
        "SELECT relname FROM pg_class JOIN pg_tablespace AS space"
        " ON space.oid = pg_class.reltablespace WHERE spcname = %s ORDER BY 1",
        (tablespace,),
    ).fetchall()
    conn.commit()
    return [row[0] for row in rows]


def test_a_publish_that_fills_the_disk_fails_clearly_and_loads_once_there_is_room(
    settings: Settings,
    database_url: str,
    postgres_cluster: ManagedPostgres,
    small_disk: SmallDisk,
    runner: pipeline.SessionRunner,
    tmp_path: Path,
) -> None:
    lake = Lake(settings.lake_root)
    serving = ServingCopy.from_settings(settings)
    # Two batches in weeks of their own: the second fills new week partitions only.
    first = generate_trips(FIRST_ROWS, tmp_path / "first", seed=81, order=Order.TIME,
                           start=datetime(2018, 1, 1), days_per_file=28).files[0].path  # fmt: skip
    second = generate_trips(SECOND_ROWS, tmp_path / "second", seed=82, order=Order.TIME,
                            start=datetime(2018, 3, 5), days_per_file=28,
                            duplicate_rate=0.02).files[0].path  # fmt: skip
    expected_first, expected_second = file_trips(first), file_trips(second)
    assert not expected_first & expected_second
    # The free-space check sees the data directory, which has room: the tablespace's disk
    # is out of its sight, so the publish meets the full disk while it writes.
    disk = DiskBudget(postgres_cluster.data, reserve_bytes=0)

    with closing(connect(database_url)) as conn:
        lake.put(first, LANDING, name="first.csv")
        (first_batch,) = pipeline.ingest(conn, lake, runner, max_attempts=1, serving=serving)
        assert ingestions.batch_summary(conn, first_batch)["status"] == "done"
        stored_before = stored_rows(conn)
    assert len(stored_before) == len(expected_first)

    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} SET default_tablespace = {}").format(
                sql.Identifier(database_name(database_url)), sql.Literal(small_disk.tablespace)
            )
        )
    # A new session takes the database's setting: new partitions and indexes go to the disk.
    with closing(connect(database_url)) as conn:
        lake.put(second, LANDING, name="second.csv")
        with pytest.raises(NotEnoughDisk) as raised:
            pipeline.ingest(conn, lake, runner, max_attempts=1, serving=serving, disk=disk)
        second_batch = newest_batch(conn)
        assert second_batch > first_batch
        failed = ingestions.batch_summary(conn, second_batch)
        print(f"\nbatch {second_batch}: {failed['status']}, error: {failed['error']}")
        assert failed["status"] == "failed", failed
        # What `tripflow ingest`, `tripflow status` and /ingestions show: the disk, the
        # rollback and what to do, in one line of words.
        assert isinstance(raised.value.__cause__, psycopg.errors.DiskFull)
        assert failed["error"] == f"publish: {raised.value}"
        assert "disk filled up" in failed["error"]
        assert "No space left on device" in failed["error"]
        assert "`tripflow retry`" in failed["error"]
        assert "\n" not in failed["error"]
        # Nothing of the second batch anywhere; the first one's trips exactly as they were.
        assert stored_rows(conn) == stored_before
        assert tablespace_tables(conn, small_disk.tablespace) == []
        assert conn.execute("SELECT count(*) FROM staging_tripdata").fetchone() == (0,)
        conn.commit()
        assert {batch for segment in serving.segments() for batch in segment.batches} == {
            first_batch
        }

        small_disk.grow(ROOM)
        assert pipeline.requeue_failed(conn, lake, second_batch) is Status.PROCESSED
        assert pipeline.ingest(conn, lake, runner, max_attempts=1, serving=serving, disk=disk) == [
            second_batch
        ]
        done = ingestions.batch_summary(conn, second_batch)
        assert (done["status"], done["error"]) == ("done", None)
        assert done["rows_loaded"] == len(expected_second)
        # Every trip of both files once: none lost, none twice.
        assert stored_trips(conn) == Counter(expected_first | expected_second)
        assert stored_before <= stored_rows(conn)
        # The second batch's partitions are on the small disk, as the first attempt's were.
        assert tablespace_tables(conn, small_disk.tablespace)
