"""Publish a staged batch into `tripdata` in one transaction."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from tripflow.warehouse.ingestions import Status, set_status
from tripflow.warehouse.statements import load_sql

# A batch at least this share of the rows already stored is published with tripdata's
# secondary indexes dropped and rebuilt afterwards. Measured on 2M rows (2 cores): keeping
# two GiST indexes and a btree up to date costs about 14.5 us per inserted row, building
# them from scratch about 3.8 us per row of the whole table, so rebuilding wins while
# batch / stored > about 0.35. The primary key stays: ON CONFLICT needs it. While such a
# publish runs, readers of tripdata wait for it (DROP INDEX locks the table).
REBUILD_SHARE = 0.3


class StagingLost(RuntimeError):
    """The batch's staged rows are not all there (the unlogged table was reset by a crash)."""


def publish_batch(conn: psycopg.Connection[Any], batch_id: int) -> bool:
    """Move a staged batch into tripdata, skipping stored trips; return False if it was
    already published.

    Counts on the batch and its files, the status and the notification commit together
    with the rows, so a crash leaves either all of it or none."""
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
        rebuild = worth_rebuilding(conn, sum(staged.values()))
        indexes = _drop_secondary_indexes(conn) if rebuild else []
        loaded = dict(conn.execute(load_sql("publish_batch"), {"batch_id": batch_id}).fetchall())
        for definition in indexes:
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
        conn.execute("DELETE FROM staging_tripdata WHERE batch_id = %s", (batch_id,))
        set_status(conn, batch_id, Status.PUBLISHED)
    return True


def worth_rebuilding(conn: psycopg.Connection[Any], staged: int) -> bool:
    """Tell whether publishing `staged` rows should rebuild tripdata's secondary indexes."""
    # The summary counts the stored trips exactly, from a few thousand rows.
    row = conn.execute("SELECT coalesce(sum(trips), 0) FROM trip_week_summary").fetchone()
    stored = int(row[0]) if row else 0
    return staged > 0 and staged >= REBUILD_SHARE * stored


def _drop_secondary_indexes(conn: psycopg.Connection[Any]) -> list[str]:
    """Drop tripdata's indexes other than the primary key; return their definitions.

    Inside the publish transaction: a crash rolls the drop back with the rows, and readers
    wait for the commit instead of seeing the table without its indexes."""
    rows = conn.execute(load_sql("secondary_indexes")).fetchall()
    for name, _ in rows:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    return [definition for _, definition in rows]
