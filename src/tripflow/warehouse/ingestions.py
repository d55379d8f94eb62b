"""Bookkeeping of ingestion batches and their files: claim, progress, counts, failures."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tripflow.lake import LANDING, Lake
from tripflow.warehouse.statements import load_sql

CHANNEL = "tripflow_ingestion"
_CHECKSUM_CHUNK = 8 * 1024 * 1024


class Status(StrEnum):
    """The last step a batch finished, in pipeline order."""

    CLAIMED = "claimed"
    PROCESSED = "processed"
    STAGED = "staged"
    PUBLISHED = "published"
    DONE = "done"
    # Set aside after too many failed attempts; not a step. `tripflow retry` resumes it from
    # the step it had finished (kept in ingestion_batch.stopped_at).
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """Tell whether the batch will not move any more."""
        return self in (Status.DONE, Status.FAILED)


@dataclass(frozen=True)
class BatchFile:
    """One claimed file."""

    file_id: int
    name: str
    landing_path: str
    processed_path: str | None
    status: str


@dataclass(frozen=True)
class Batch:
    """One batch and its files."""

    batch_id: int
    status: Status
    files: list[BatchFile]
    # The run of the Spark job whose output was recorded (None before one was).
    spark_attempt: str | None = None


def checksum(lake: Lake, path: str) -> str:
    """Return the SHA-256 of a lake file, read in chunks."""
    digest = hashlib.sha256()
    with lake.open(path) as handle:
        while chunk := handle.read(_CHECKSUM_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def claim_batch(
    conn: psycopg.Connection[Any], lake: Lake, only: Collection[str] | None = None
) -> Batch | None:
    """Claim every complete file waiting in the landing dir (or only those named, e.g. the
    ones a sensor saw stop growing) as a new batch, or None.

    A file already held by an unfinished batch is left to that batch, so no file is ever
    claimed twice, even by two claims running at once."""
    waiting = {
        row[0]
        for row in conn.execute(
            "SELECT landing_path FROM ingestion_file WHERE processed_path IS NULL"
        ).fetchall()
    }
    conn.commit()
    candidates = [
        item
        for item in lake.list_files(LANDING)
        if item.path not in waiting and (only is None or item.path in only)
    ]
    if not candidates:
        return None
    sums = {item.path: checksum(lake, item.path) for item in candidates}
    with conn.transaction():
        batch_id = conn.execute(
            "INSERT INTO ingestion_batch DEFAULT VALUES RETURNING batch_id"
        ).fetchone()[0]  # type: ignore[index]
        claimed = 0
        for item in candidates:
            row = conn.execute(
                load_sql("claim_file"),
                {
                    "batch_id": batch_id,
                    "name": item.name,
                    "landing_path": item.path,
                    "size_bytes": item.size,
                    "checksum": sums[item.path],
                },
            ).fetchone()
            claimed += row is not None
        if not claimed:
            conn.execute("DELETE FROM ingestion_batch WHERE batch_id = %s", (batch_id,))
            return None
        conn.execute(
            "UPDATE ingestion_batch SET files = %s WHERE batch_id = %s", (claimed, batch_id)
        )
        notify(conn, batch_id)
    return get_batch(conn, batch_id)


def get_batch(conn: psycopg.Connection[Any], batch_id: int) -> Batch:
    """Read a batch and its files."""
    status = conn.execute(
        "SELECT status, spark_attempt FROM ingestion_batch WHERE batch_id = %s", (batch_id,)
    ).fetchone()
    if status is None:
        raise LookupError(f"no ingestion batch {batch_id}")
    files = [
        BatchFile(*row)
        for row in conn.execute(
            "SELECT file_id, name, landing_path, processed_path, status FROM ingestion_file"
            " WHERE batch_id = %s ORDER BY file_id",
            (batch_id,),
        )
    ]
    conn.commit()
    return Batch(batch_id, Status(status[0]), files, status[1])


def unfinished_batches(conn: psycopg.Connection[Any]) -> list[int]:
    """Return the ids of batches a crash or failure left before `done`, oldest first."""
    rows = conn.execute(
        "SELECT batch_id FROM ingestion_batch WHERE status NOT IN ('done', 'failed')"
        " ORDER BY batch_id"
    ).fetchall()
    conn.commit()
    return [row[0] for row in rows]


def set_status(conn: psycopg.Connection[Any], batch_id: int, status: Status) -> None:
    """Record that a batch finished a step (inside the caller's transaction); a failed
    batch keeps its last error."""
    conn.execute(
        "UPDATE ingestion_batch SET status = %(status)s, updated_at = now(),"
        " error = CASE WHEN %(status)s = 'failed' THEN error END,"
        " finished_at = CASE WHEN %(status)s IN ('done', 'failed') THEN now() END"
        " WHERE batch_id = %(batch_id)s",
        {"status": status.value, "batch_id": batch_id},
    )
    notify(conn, batch_id)


def set_aside(conn: psycopg.Connection[Any], batch_id: int) -> None:
    """Mark a batch failed, remembering the step it had finished (inside the caller's
    transaction)."""
    conn.execute(
        "UPDATE ingestion_batch SET stopped_at = status WHERE batch_id = %s AND status <> 'failed'",
        (batch_id,),
    )
    set_status(conn, batch_id, Status.FAILED)


def stopped_at(conn: psycopg.Connection[Any], batch_id: int) -> Status:
    """Return the step a failed batch had finished when it was set aside."""
    row = conn.execute(
        "SELECT status, stopped_at FROM ingestion_batch WHERE batch_id = %s", (batch_id,)
    ).fetchone()
    if row is None:
        raise LookupError(f"no ingestion batch {batch_id}")
    if row[0] != Status.FAILED:
        raise ValueError(f"batch {batch_id} is {row[0]}, not failed")
    return Status(row[1] or Status.CLAIMED)


def resume(
    conn: psycopg.Connection[Any], batch_id: int, status: Status, returned_files: Collection[int]
) -> None:
    """Put a failed batch back at `status` with a clean slate of attempts, its files back in
    the landing dir (inside the caller's transaction)."""
    conn.execute(
        "UPDATE ingestion_batch SET status = %s, stopped_at = NULL, attempts = 0, error = NULL,"
        " finished_at = NULL, updated_at = now() WHERE batch_id = %s",
        (status.value, batch_id),
    )
    conn.execute(
        "UPDATE ingestion_file SET processed_path = NULL WHERE file_id = ANY(%s)",
        (list(returned_files),),
    )
    notify(conn, batch_id)


# Taken by every writer of an event until its commit, so events are numbered in commit
# order: a reader that has seen event n never later finds a smaller one committed.
EVENT_LOCK = 0x74726970666C6F77  # "tripflow"

RECORD_EVENT = """
WITH event AS (
    INSERT INTO ingestion_event (batch_id, payload)
    SELECT batch_id, jsonb_build_object(
        'batch_id', batch_id, 'status', status, 'files', files, 'rows_read', rows_read,
        'rows_loaded', rows_loaded, 'rows_rejected', rows_rejected,
        'rows_duplicate', rows_duplicate, 'error', error)
    FROM ingestion_batch WHERE batch_id = %(batch_id)s
    RETURNING event_id, at, payload
)
SELECT pg_notify(
    %(channel)s,
    -- A notification holds at most 8000 bytes: the error is cut short there (the event row
    -- keeps it whole).
    (payload || jsonb_build_object(
        'error', left(payload->>'error', 2000), 'event_id', event_id, 'at', at))::text
)
FROM event
"""


def notify(conn: psycopg.Connection[Any], batch_id: int) -> None:
    """Record the batch's state as an event and push it to listeners of the ingestion
    channel (both take effect on commit, inside the caller's transaction)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (EVENT_LOCK,))
    conn.execute(RECORD_EVENT, {"batch_id": batch_id, "channel": CHANNEL})


def record_failure(conn: psycopg.Connection[Any], batch_id: int, error: str) -> int:
    """Keep a step's error on the batch, which stays where it was, to be resumed; return
    the number of failed attempts so far."""
    conn.rollback()
    with conn.transaction():
        row = conn.execute(
            "UPDATE ingestion_batch SET error = %s, attempts = attempts + 1, updated_at = now()"
            " WHERE batch_id = %s RETURNING attempts",
            (error, batch_id),
        ).fetchone()
        notify(conn, batch_id)
    return int(row[0]) if row else 0


def record_reports(
    conn: psycopg.Connection[Any],
    batch_id: int,
    reports: list[dict[str, Any]],
    attempt: str | None = None,
) -> None:
    """Store the per-file counts of one run of the Spark job (its output is the batch's
    from now on) and mark the batch processed."""
    with conn.transaction():
        conn.execute(
            "UPDATE ingestion_batch SET spark_attempt = %s WHERE batch_id = %s",
            (attempt, batch_id),
        )
        for report in reports:
            header_error = report.get("header_error")
            conn.execute(
                "UPDATE ingestion_file SET rows_read = %s, rows_rejected = %s,"
                " rows_duplicate = %s, rows_loaded = 0, error = %s,"
                " status = CASE WHEN %s THEN 'rejected' ELSE 'claimed' END"
                " WHERE file_id = %s AND batch_id = %s",
                (
                    report["rows_read"],
                    report["rows_rejected"],
                    report["rows_duplicate"],
                    header_error,
                    header_error is not None,
                    report["file_id"],
                    batch_id,
                ),
            )
        set_status(conn, batch_id, Status.PROCESSED)


def record_archived(conn: psycopg.Connection[Any], file_id: int, processed_path: str) -> None:
    """Record where a file went once it left the landing dir."""
    with conn.transaction():
        conn.execute(
            "UPDATE ingestion_file SET processed_path = %s, finished_at = now() WHERE file_id = %s",
            (processed_path, file_id),
        )


def batch_summary(conn: psycopg.Connection[Any], batch_id: int) -> dict[str, Any]:
    """Return a batch with its counts and files, as plain values."""
    with conn.cursor(row_factory=dict_row) as cursor:
        batch = cursor.execute(
            "SELECT * FROM ingestion_batch WHERE batch_id = %s", (batch_id,)
        ).fetchone()
        files = cursor.execute(
            "SELECT file_id, name, status, rows_read, rows_loaded, rows_rejected,"
            " rows_duplicate, same_as_file_id, error, processed_path"
            " FROM ingestion_file WHERE batch_id = %s ORDER BY file_id",
            (batch_id,),
        ).fetchall()
    conn.commit()
    if batch is None:
        raise LookupError(f"no ingestion batch {batch_id}")
    return {**batch, "files": files}


def summary_json(summary: dict[str, Any]) -> str:
    """Render a batch summary as JSON."""
    return json.dumps(summary, default=str, indent=2)


class BatchFollower:
    """Follow ingestion batches as PostgreSQL pushes their status (LISTEN/NOTIFY)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> BatchFollower:
        # Listen before anything is added, so no status change can slip past.
        self.listener = psycopg.connect(self.url, autocommit=True)
        self.listener.execute(f"LISTEN {CHANNEL}")
        self.reader = psycopg.connect(self.url, autocommit=True)
        row = self.reader.execute("SELECT coalesce(max(file_id), 0) FROM ingestion_file").fetchone()
        self.known_file_id = int(row[0]) if row else 0
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.listener.close()
        self.reader.close()

    def events(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield each status change pushed on the channel, as a dict."""
        for note in self.listener.notifies(timeout=timeout):
            yield json.loads(note.payload)

    def _finished_batches(self, landing_paths: list[str]) -> list[int] | None:
        rows = self.reader.execute(
            "SELECT f.landing_path, f.batch_id, b.status FROM ingestion_file AS f"
            " JOIN ingestion_batch AS b USING (batch_id)"
            " WHERE f.file_id > %s AND f.landing_path = ANY(%s)",
            (self.known_file_id, landing_paths),
        ).fetchall()
        if {row[0] for row in rows} != set(landing_paths):
            return None
        if not all(Status(row[2]).finished for row in rows):
            return None
        return sorted({int(row[1]) for row in rows})

    def follow(
        self,
        landing_paths: list[str],
        timeout: float,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Wait until the batches holding these newly added files are done (or failed);
        return their summaries. Raise TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (done := self._finished_batches(landing_paths)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"not loaded after {timeout:.0f} s: {', '.join(landing_paths)} "
                    "(is the stack up? `tripflow status`)"
                )
            # Wake on each pushed change; the timeout only bounds the wait.
            for note in self.listener.notifies(timeout=min(remaining, 30), stop_after=1):
                if on_event:
                    on_event(json.loads(note.payload))
        return [batch_summary(self.reader, batch_id) for batch_id in done]
