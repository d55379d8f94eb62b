"""Publish a staged batch into `tripdata` in one transaction."""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Protocol

import psycopg
from psycopg import sql

from tripflow.warehouse.ingestions import Status, set_status
from tripflow.warehouse.load import clear_staging
from tripflow.warehouse.statements import load_sql

log = logging.getLogger(__name__)

# A batch that is a large enough share of the rows already stored is published with
# tripdata's indexes dropped and rebuilt afterwards. Keeping the indexes up to date costs
# per inserted row, rebuilding them costs per stored row, and the first grows with the
# table: once the indexes outgrow shared buffers each insert misses pages. Measured on this
# project's reference machine (2 cores, 6 GB shared buffers; docs/benchmarks.md):
#   2M stored:  keeping ~14.5 us per inserted row, rebuilding ~3.8 us per stored row
#               -> rebuilding wins from a share of about 0.26 (0.3 is used);
#   40M stored: 10M kept in 707 s (71 us per row), 10M into 30M rebuilt in 371 s
#               (9.3 us per stored row) -> rebuilding wins from about 0.13.
# Between the two sizes the share is interpolated in log(stored); it stays 0.3 below and
# falls no lower than 0.1 above. The primary key goes too: its keys are MD5s, so inserting
# them touches a random page of the key index per row; without it, trips already stored are
# found by one hash anti-join and the key index is built again sorted. While such a
# publish runs, readers of tripdata wait for it (the API gives up after
# TRIPFLOW_API_LOCK_TIMEOUT and answers 503).
_SHARE_POINTS = ((2_000_000, 0.3), (40_000_000, 0.13))
_SHARE_FLOOR = 0.1


class StagingLost(RuntimeError):
    """The batch's staged rows are not all there (the unlogged table was reset by a crash)."""


class SegmentWriter(Protocol):
    """Writes a publishing batch's rows to the serving copy (tripflow.serving)."""

    def begin(self, batch_id: int) -> None:
        """Start writing the batch's staged rows, before the publish statement runs."""

    def abandon(self, batch_id: int) -> None:
        """Drop what `begin` wrote (the publish did not happen)."""

    def write_batch(
        self, conn: psycopg.Connection[Any], batch_id: int, *, all_inserted: bool
    ) -> None:
        """Write the rows the caller's transaction just inserted for the batch."""


def publish_batch(
    conn: psycopg.Connection[Any], batch_id: int, serving: SegmentWriter | None = None
) -> bool:
    """Move a staged batch into tripdata, skipping stored trips; return False if it was
    already published.

    Counts on the batch and its files, the status and the notification commit together
    with the rows, so a crash leaves either all of it or none. With `serving`, the batch's
    segment of the serving copy is written before the commit: readers take a segment
    only for a batch PostgreSQL says is published, so both stores show the batch at once."""
    try:
        return _publish(conn, batch_id, serving)
    except BaseException:
        if serving is not None:
            serving.abandon(batch_id)
        raise


def _publish(conn: psycopg.Connection[Any], batch_id: int, serving: SegmentWriter | None) -> bool:
    with conn.transaction():
        row = conn.execute(
            "SELECT status, rows_staged FROM ingestion_batch WHERE batch_id = %s FOR UPDATE",
            (batch_id,),
        ).fetchone()
        if row is None:
            raise LookupError(f"no ingestion batch {batch_id}")
        if row[0] != Status.STAGED:
            return False
        staged = dict(conn.execute(load_sql("staged_counts"), {"batch_id": batch_id}).fetchall())
        if sum(staged.values()) != (row[1] or 0):
            raise StagingLost(
                f"batch {batch_id}: {sum(staged.values())} rows in staging, {row[1]} expected"
            )
        # The statement sorts the whole batch into place order and, when rebuilding, hashes
        # every stored key: bulk work, so it gets the bulk budget for this transaction
        # only. With the 64 MB default a publish of 10M into 30M ran 16+ minutes before it
        # was stopped; with this it took 371 s (the two were not split further).
        conn.execute("SELECT set_config('work_mem', current_setting('maintenance_work_mem'), true)")
        if serving is not None:
            _begin_segment(serving, batch_id)
        rebuild = worth_rebuilding(conn, sum(staged.values()))
        rebuilt = _drop_indexes(conn) if rebuild else []
        statement = sql.SQL(load_sql("publish_batch")).format(
            new_only=_NEW_ONLY if rebuild else sql.SQL(""),
            on_conflict=sql.SQL("") if rebuild else _ON_CONFLICT,
        )
        loaded = dict(conn.execute(statement, {"batch_id": batch_id}).fetchall())
        for definition in rebuilt:
            conn.execute(definition)
        files = conn.execute(
            "SELECT file_id FROM ingestion_file WHERE batch_id = %s AND status = 'claimed'",
            (batch_id,),
        ).fetchall()
        for (file_id,) in files:
            new = loaded.get(file_id, 0)
            already_stored = staged.get(file_id, 0) - new
            conn.execute(
                "UPDATE ingestion_file SET rows_loaded = %s,"
                " rows_duplicate = rows_duplicate + %s, status = 'loaded'"
                " WHERE file_id = %s",
                (new, already_stored, file_id),
            )
        conn.execute(load_sql("batch_totals"), {"batch_id": batch_id})
        if serving is not None:
            _write_segment(conn, serving, batch_id, sum(loaded.values()) == sum(staged.values()))
        clear_staging(conn, batch_id)
        set_status(conn, batch_id, Status.PUBLISHED)
    return True


def _begin_segment(serving: SegmentWriter, batch_id: int) -> None:
    try:
        serving.begin(batch_id)
    except Exception as error:
        # write_batch tries again from the start; a failure there is only logged.
        log.warning("batch %s: serving copy not started (%s)", batch_id, error)


def _write_segment(
    conn: psycopg.Connection[Any], serving: SegmentWriter, batch_id: int, all_inserted: bool
) -> None:
    started = time.perf_counter()
    try:
        serving.write_batch(conn, batch_id, all_inserted=all_inserted)
    except psycopg.Error:
        raise
    except Exception as error:
        # The trips still publish: readers answer from PostGIS until the copy holds the
        # batch, which the next ingest (or `tripflow serving sync`) writes from tripdata.
        log.warning("batch %s: serving copy not written (%s)", batch_id, error)
        return
    log.info("batch %s: serving copy written in %.1f s", batch_id, time.perf_counter() - started)


def worth_rebuilding(conn: psycopg.Connection[Any], staged: int) -> bool:
    """Tell whether publishing `staged` rows should rebuild tripdata's secondary indexes."""
    # The summary counts the stored trips exactly, from a few thousand rows.
    row = conn.execute("SELECT coalesce(sum(trips), 0) FROM trip_week_summary").fetchone()
    stored = int(row[0]) if row else 0
    return staged > 0 and staged >= rebuild_share(stored) * stored


def rebuild_share(stored: int) -> float:
    """Return the share of `stored` from which a batch is cheaper to publish by rebuilding."""
    (small, small_share), (large, large_share) = _SHARE_POINTS
    if stored <= small:
        return small_share
    position = math.log(stored / small) / math.log(large / small)
    return max(_SHARE_FLOOR, small_share + (large_share - small_share) * position)


def _drop_indexes(conn: psycopg.Connection[Any]) -> list[sql.Composed | sql.SQL]:
    """Drop tripdata's indexes and primary key; return the statements that restore them.

    Inside the publish transaction: a crash rolls the drop back with the rows, and readers
    wait for the commit instead of seeing the table without its indexes."""
    restore: list[sql.Composed | sql.SQL] = []
    for name, is_key, definition in conn.execute(load_sql("table_indexes")).fetchall():
        if is_key:
            conn.execute(
                sql.SQL("ALTER TABLE tripdata DROP CONSTRAINT {}").format(sql.Identifier(name))
            )
            # Restored first, so a duplicate would fail the publish before the long builds.
            restore.insert(
                0,
                sql.SQL("ALTER TABLE tripdata ADD CONSTRAINT {} {}").format(
                    sql.Identifier(name), sql.SQL(definition)
                ),
            )
        else:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
            restore.append(sql.SQL(definition))
    return restore


# Without a key index there is nothing for ON CONFLICT to use: trips already stored are
# left out by an anti-join instead.
_NEW_ONLY = sql.SQL(
    "AND NOT EXISTS (SELECT 1 FROM tripdata AS stored"
    " WHERE stored.trip_key = staging_tripdata.trip_key)"
)
_ON_CONFLICT = sql.SQL("ON CONFLICT (trip_key) DO NOTHING")
