"""Publish a staged batch into `tripdata` in one transaction."""

from __future__ import annotations

from typing import Any

import psycopg

from tripflow.warehouse.ingestions import Status, set_status
from tripflow.warehouse.statements import load_sql


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
        loaded = dict(conn.execute(load_sql("publish_batch"), {"batch_id": batch_id}).fetchall())
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
