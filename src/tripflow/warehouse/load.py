"""Load a batch's trusted Parquet into `staging_tripdata` with PostgreSQL COPY."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tripflow.lake import Lake
from tripflow.warehouse.ingestions import Status, set_status

STAGING_COLUMNS = (
    "file_id",
    "trip_key",
    "region",
    "origin_lon",
    "origin_lat",
    "destination_lon",
    "destination_lat",
    "datetime",
    "datasource",
)
_COPY = (
    "COPY staging_tripdata (batch_id, " + ", ".join(STAGING_COLUMNS) + ") FROM STDIN (FORMAT csv)"
)
# Rows per Arrow batch turned into one CSV chunk: large enough to amortise the calls,
# small enough to keep memory flat on 100M-row batches.
_ROWS_PER_CHUNK = 200_000


def load_staging(conn: psycopg.Connection[Any], lake: Lake, batch_id: int, trusted_dir: str) -> int:
    """Replace the batch's rows in staging with its trusted Parquet; return the row count.

    Rows go in as the job wrote them (files by name, each from its start): the place order
    publish stores them in.

    Arrow reads the Parquet and writes CSV in C++, and COPY takes it in: no Python per row.
    The delete and the copy share one transaction, so a rerun never doubles rows."""
    rows = 0
    options = pacsv.WriteOptions(include_header=False)
    with conn.transaction():
        conn.execute("DELETE FROM staging_tripdata WHERE batch_id = %s", (batch_id,))
        with conn.cursor() as cursor, cursor.copy(_COPY) as copy:
            for chunk in _read_batches(lake, trusted_dir):
                if chunk.num_rows == 0:
                    continue
                table = pa.Table.from_batches([chunk]).add_column(
                    0, "batch_id", pa.array([batch_id] * chunk.num_rows, pa.int64())
                )
                buffer = io.BytesIO()
                pacsv.write_csv(table, buffer, options)
                copy.write(buffer.getbuffer())
                rows += chunk.num_rows
        # Statistics of what is staged now: without them publish is planned for whatever
        # size the table had at its last autovacuum (10M rows planned for 100k, with JIT).
        conn.execute("ANALYZE staging_tripdata")
        conn.execute(
            "UPDATE ingestion_batch SET rows_staged = %s WHERE batch_id = %s", (rows, batch_id)
        )
        set_status(conn, batch_id, Status.STAGED)
    return rows


def parquet_files(lake: Lake, directory: str) -> list[str]:
    """Return a directory's Parquet files in name order, as a dataset reader discovers them
    (what Spark writes beside them, under names starting with `_` or `.`, is left out)."""
    root = lake.full_path(directory).rstrip("/")
    found = []
    for path in lake.fs.find(root):
        relative = path[len(root) :].lstrip("/") if path.startswith(root) else path
        if relative.endswith(".parquet") and not any(
            part.startswith(("_", ".")) for part in relative.split("/")
        ):
            found.append(path)
    return sorted(found)


def _read_batches(lake: Lake, directory: str) -> Iterator[pa.RecordBatch]:
    # pyarrow.parquet, not pyarrow.dataset: the latter brings pandas, 1.2 s of every
    # publish task's start (a small file's landing-to-queryable time is made of such).
    for path in parquet_files(lake, directory):
        with lake.fs.open(path, "rb") as handle:
            yield from pq.ParquetFile(handle).iter_batches(
                batch_size=_ROWS_PER_CHUNK, columns=list(STAGING_COLUMNS)
            )


def clear_staging(conn: psycopg.Connection[Any], batch_id: int) -> None:
    """Remove a batch's rows from staging (published, or set aside as failed).

    The table is emptied outright when the batch was its only one: deleted rows would stay
    behind as dead space every later scan wades through until autovacuum comes (10M of them
    after a batch of 10M). A batch staged meanwhile by another transaction and emptied with
    it is caught by publish's count check and staged again."""
    others = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM staging_tripdata WHERE batch_id <> %s)", (batch_id,)
    ).fetchone()
    if others and others[0]:
        conn.execute("DELETE FROM staging_tripdata WHERE batch_id = %s", (batch_id,))
    else:
        conn.execute("TRUNCATE staging_tripdata")
