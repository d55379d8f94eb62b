"""`tripflow retry`: a batch set aside as failed resumes from the last step it finished, and
Spark runs again only when that step was Spark's own."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.conftest import SAMPLE
from tripflow import pipeline
from tripflow.config import Settings
from tripflow.lake import LANDING, PROCESSED, Lake
from tripflow.orchestration.tasks import SparkAlreadySubmitted
from tripflow.services.postgres import ManagedPostgres
from tripflow.warehouse import ingestions
from tripflow.warehouse.ingestions import Status
from tripflow.warehouse.publish import DiskBudget, NotEnoughDisk

# Fails if asked to run the Spark job: a resumed batch that must not need Spark runs with it.
NO_SPARK = SparkAlreadySubmitted()


@pytest.fixture
def lake(settings: Settings) -> Lake:
    return Lake(settings.lake_root)


def summary(conn: psycopg.Connection[Any], batch_id: int) -> dict[str, Any]:
    return ingestions.batch_summary(conn, batch_id)


def stored(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM tripdata").fetchone()
    conn.commit()
    assert row is not None
    return int(row[0])


def only_batch(conn: psycopg.Connection[Any]) -> int:
    (batch_id,) = conn.execute("SELECT batch_id FROM ingestion_batch").fetchone() or ()
    conn.commit()
    return int(batch_id)


def assert_done_once(conn: psycopg.Connection[Any], lake: Lake, batch_id: int) -> None:
    done = summary(conn, batch_id)
    assert (done["status"], done["rows_loaded"], done["attempts"]) == ("done", 100, 0)
    assert done["error"] is None
    assert done["files"][0]["processed_path"] == f"{PROCESSED}/{batch_id}/trips.csv"
    assert lake.exists(f"{PROCESSED}/{batch_id}/trips.csv")
    assert stored(conn) == 100
    assert conn.execute("SELECT count(*) FROM staging_tripdata").fetchone() == (0,)


def test_a_batch_failed_in_spark_runs_spark_again(
    conn: psycopg.Connection[Any], lake: Lake, runner: pipeline.SessionRunner
) -> None:
    lake.put(SAMPLE, LANDING)
    with pytest.raises(pipeline.SparkJobError):
        pipeline.ingest(conn, lake, NO_SPARK, max_attempts=1)
    batch_id = only_batch(conn)
    assert summary(conn, batch_id)["status"] == "failed"
    assert not lake.exists(f"{LANDING}/trips.csv")

    assert pipeline.requeue_failed(conn, lake, batch_id) is Status.CLAIMED
    assert lake.exists(f"{LANDING}/trips.csv")
    assert pipeline.ingest(conn, lake, runner, max_attempts=1) == [batch_id]
    assert_done_once(conn, lake, batch_id)


def test_a_batch_failed_loading_staging_reuses_the_spark_output(
    conn: psycopg.Connection[Any], lake: Lake, runner: pipeline.SessionRunner
) -> None:
    # A constraint every row breaks makes the real COPY into staging fail.
    conn.execute("ALTER TABLE staging_tripdata ADD CONSTRAINT refuse_all CHECK (false) NOT VALID")
    conn.commit()
    lake.put(SAMPLE, LANDING)
    with pytest.raises(psycopg.errors.CheckViolation):
        pipeline.ingest(conn, lake, runner, max_attempts=1)
    batch_id = only_batch(conn)
    assert summary(conn, batch_id)["error"].startswith("staging: ")
    conn.execute("ALTER TABLE staging_tripdata DROP CONSTRAINT refuse_all")
    conn.commit()

    assert pipeline.requeue_failed(conn, lake, batch_id) is Status.PROCESSED
    assert pipeline.ingest(conn, lake, NO_SPARK, max_attempts=1) == [batch_id]
    assert_done_once(conn, lake, batch_id)


def test_a_batch_failed_at_publish_is_staged_again_without_spark(
    conn: psycopg.Connection[Any],
    lake: Lake,
    runner: pipeline.SessionRunner,
    postgres_cluster: ManagedPostgres,
) -> None:
    lake.put(SAMPLE, LANDING)
    # The free-space check with its threshold forced high: the batch fails before writing.
    no_room = DiskBudget(postgres_cluster.data, reserve_bytes=10**18)
    with pytest.raises(NotEnoughDisk):
        pipeline.ingest(conn, lake, runner, max_attempts=1, disk=no_room)
    batch_id = only_batch(conn)
    failed = summary(conn, batch_id)
    assert (failed["status"], failed["rows_staged"]) == ("failed", 100)
    assert "TRIPFLOW_PUBLISH_DISK_RESERVE" in failed["error"]
    assert stored(conn) == 0

    assert pipeline.requeue_failed(conn, lake, batch_id) is Status.PROCESSED
    room = DiskBudget(postgres_cluster.data, reserve_bytes=0)
    assert pipeline.ingest(conn, lake, NO_SPARK, max_attempts=1, disk=room) == [batch_id]
    assert_done_once(conn, lake, batch_id)


def test_a_batch_failed_archiving_its_files_only_archives_them(
    conn: psycopg.Connection[Any], lake: Lake, runner: pipeline.SessionRunner
) -> None:
    # A file where the batch's processed/ directory must go: the real move fails. (The
    # test's database is new, so its first batch is batch 1.)
    blocker = lake.full_path(f"{PROCESSED}/1")
    lake.makedirs(PROCESSED)
    with lake.fs.open(blocker, "wb") as handle:
        handle.write(b"in the way")
    lake.put(SAMPLE, LANDING)
    with pytest.raises(OSError):
        pipeline.ingest(conn, lake, runner, max_attempts=1)
    batch_id = only_batch(conn)
    assert batch_id == 1
    failed = summary(conn, batch_id)
    assert (failed["status"], failed["error"][:9]) == ("failed", "archive: ")
    assert stored(conn) == 100
    lake.fs.rm(blocker)

    assert pipeline.requeue_failed(conn, lake, batch_id) is Status.PUBLISHED
    assert pipeline.ingest(conn, lake, NO_SPARK, max_attempts=1) == [batch_id]
    assert_done_once(conn, lake, batch_id)


def test_only_a_failed_batch_can_be_retried(
    conn: psycopg.Connection[Any], lake: Lake, runner: pipeline.SessionRunner
) -> None:
    lake.put(SAMPLE, LANDING)
    (batch_id,) = pipeline.ingest(conn, lake, runner)
    with pytest.raises(ValueError, match="is done, not failed"):
        pipeline.requeue_failed(conn, lake, batch_id)
    with pytest.raises(LookupError):
        pipeline.requeue_failed(conn, lake, batch_id + 1)
